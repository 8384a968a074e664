"""Backend for TorchScript modules, where forward hooks are refused.

Layer outputs come from a copy of the forward graph: the ``prim::CallMethod`` of a top-level child
returns its output beside the logits. For gradients, a second copy takes the gradient layer's output as
an extra input (prefix nodes that become unused are removed), so autograd starts at that layer.
Layers are the top-level children plus ``PENULTIMATE`` (the input of the final child's call).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .backend import (INPUT, PENULTIMATE, Forward, ModelBackend, ModelInfo, UnknownLayerError, model_label,
                      running_model)
from .outputs import logits_of
from .probabilities import FROM_SOFTMAX_INPUT, logits_from
from .torch_backend import TorchForward


class ScriptModuleBackend(ModelBackend):
    """A ``torch.jit.ScriptModule`` (traced or scripted)."""

    def __init__(self, module: torch.jit.ScriptModule, info: ModelInfo):
        self.module = module.eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.info = info
        self._method, graph = _forward_graph(self.module)
        self._softmax_cut = info.output.logits == FROM_SOFTMAX_INPUT  # return the final softmax's input
        self._children = _child_calls(graph)
        self._functions: dict[tuple, torch._C.ScriptFunction] = {}

    def layer_names(self) -> list[str]:
        names = list(self._children)
        return names + ([PENULTIMATE] if self._penultimate_value(self._graph_copy()) is not None else [])

    def execution_order(self, x: torch.Tensor, names: Sequence[str]) -> list[str]:
        return [name for name in self._children if name in names]

    def _graph_copy(self) -> torch._C.Graph:
        graph = self.module._c._get_method(self._method).graph.copy()
        found = final_softmax(self.module, graph) if self._softmax_cut else None
        if found is not None:
            graph.return_node().replaceInput(0, found[0])
        return graph

    def _value(self, graph: torch._C.Graph, layer: str):
        if layer == PENULTIMATE:
            value = self._penultimate_value(graph)
        else:
            node = _child_calls(graph).get(layer)
            value = node.output() if node is not None else None
        if value is None:
            raise UnknownLayerError(layer, self.layer_names(), model_label(self.info), what="top-level layer")
        return value

    @staticmethod
    def _penultimate_value(graph):
        returned = graph.return_node().inputsAt(0).node()
        if returned.kind() == "prim::TupleConstruct":
            returned = returned.inputsAt(0).node()
        if returned.kind() == "prim::CallMethod" and returned.inputsAt(0).node().kind() == "prim::GetAttr":
            return returned.inputsAt(1)
        return None

    def _function(self, layers: tuple[str, ...], replaced: str | None):
        key = (layers, replaced)
        if key not in self._functions:
            graph = self._graph_copy()
            values = [graph.return_node().inputsAt(0)] + [self._value(graph, name) for name in layers]
            _return_tuple(graph, values)
            if replaced is not None:
                old = self._value(graph, replaced)
                new = graph.addInput("replacement")
                new.setType(old.type())
                old.replaceAllUsesWith(new)
                _remove_unused(graph)
            self._functions[key] = torch._C._create_function_from_graph(f"kdx_{len(self._functions)}", graph)
        return self._functions[key]

    def _prefix_function(self, layer: str):
        """A function returning only ``layer``'s output: the nodes after it are removed."""
        key = ((layer,), "prefix")
        if key not in self._functions:
            graph = self._graph_copy()
            graph.return_node().replaceInput(0, self._value(graph, layer))
            _remove_unused(graph)
            self._functions[key] = torch._C._create_function_from_graph(f"kdx_{len(self._functions)}", graph)
        return self._functions[key]

    def _call(self, x, layers, replaced=None, replacement=None):
        fn = self._function(tuple(layers), replaced)
        args = (self.module._c, x) if replaced is None else (self.module._c, x, replacement)
        with running_model():
            out = fn(*args)
        # a traced identity module (timm's ``norm_pre``, ``fc_norm``) can leave no tensor: not a layer output
        return logits_from(logits_of(out[0]), self.info.output), {name: value for name, value in zip(layers, out[1:]) if isinstance(value, torch.Tensor)}

    def forward(self, x: torch.Tensor, layers: Sequence[str] = (), grad_layer: str | None = None) -> Forward:
        layers = list(dict.fromkeys(layers))
        if grad_layer is None:
            with torch.no_grad():
                logits, acts = self._call(x, layers)
            return TorchForward(logits, acts, None, None, {})
        if grad_layer == INPUT:
            leaf = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                logits, acts = self._call(leaf, layers)
            connected = {k: v for k, v in acts.items() if v.requires_grad}
            return TorchForward(logits, {**acts, INPUT: leaf}, grad_layer, leaf, connected)
        with torch.no_grad(), running_model():
            activation = self._prefix_function(grad_layer)(self.module._c, x)
        leaf = activation.detach().requires_grad_(True)
        others = [name for name in layers if name != grad_layer]
        with torch.enable_grad():
            logits, acts = self._call(x, others, replaced=grad_layer, replacement=leaf)
        connected = {k: v for k, v in acts.items() if v.requires_grad}
        return TorchForward(logits, {**acts, grad_layer: leaf}, grad_layer, leaf, connected)

    @torch.no_grad()
    def logits_with_replaced(self, x: torch.Tensor, layer: str, activation: torch.Tensor) -> torch.Tensor:
        batch = x.expand(activation.shape[0], *x.shape[1:])
        logits, _ = self._call(batch, [], replaced=layer, replacement=activation)
        return logits


def _forward_graph(module) -> tuple[str, torch._C.Graph]:
    """The method holding the real forward: follows ``forward`` delegating to another method of self
    (torchvision's ``_forward_impl``)."""
    method = "forward"
    while True:
        graph = module._c._get_method(method).graph
        self_value = next(iter(graph.inputs()))
        calls = [n for n in graph.nodes() if n.kind() == "prim::CallMethod"]
        if len(calls) == 1 and calls[0].inputsAt(0).unique() == self_value.unique():
            method = calls[0].s("name")
            continue
        return method, graph


_SOFTMAX_FUNCTIONS = ("softmax", "log_softmax")
_SOFTMAX_MODULES = ("Softmax", "LogSoftmax")


def final_softmax(module, graph) -> tuple[torch._C.Value, str] | None:
    """The value entering the softmax over the classes whose result ``graph`` returns (an ``aten::softmax``
    or ``aten::log_softmax`` op, a scripted ``F.softmax`` call, or a call of an ``nn.Softmax`` child),
    with the softmax's name; None when the output does not come straight from one."""
    node = graph.return_node().inputsAt(0).node()
    kind = node.kind()
    if kind in ("aten::softmax", "aten::log_softmax"):
        value, dim, name = node.inputsAt(0), _constant(node.inputsAt(1)), kind
    elif kind == "prim::CallFunction":
        function = str(node.inputsAt(0).type()).rsplit(".", 1)[-1]
        if function not in _SOFTMAX_FUNCTIONS or node.inputsSize() < 3:
            return None
        value, dim, name = node.inputsAt(1), _constant(node.inputsAt(2)), f"F.{function}"
    elif kind == "prim::CallMethod" and node.s("name") == "forward" and node.inputsAt(0).node().kind() == "prim::GetAttr":
        source = node.inputsAt(0).node()
        if source.inputsAt(0).unique() != next(iter(graph.inputs())).unique():
            return None
        child = getattr(module, source.s("name"), None)
        if getattr(child, "original_name", None) not in _SOFTMAX_MODULES:
            return None
        value, dim, name = node.inputsAt(1), getattr(child, "dim", None), f"{source.s('name')} ({child.original_name})"
    else:
        return None
    return (value, name) if dim in (1, -1, None) else None


def _constant(value):
    try:
        return value.toIValue()
    except RuntimeError:  # not a constant
        return "unknown"


def _child_calls(graph) -> dict[str, torch._C.Node]:
    """Top-level children called exactly once in ``graph``, by name, in call order."""
    self_value = next(iter(graph.inputs()))
    calls: dict[str, list] = {}
    for node in graph.nodes():
        if node.kind() != "prim::CallMethod" or node.s("name") != "forward":
            continue
        source = node.inputsAt(0).node()
        if source.kind() == "prim::GetAttr" and source.inputsAt(0).unique() == self_value.unique():
            calls.setdefault(source.s("name"), []).append(node)
    return {name: nodes[0] for name, nodes in calls.items() if len(nodes) == 1}


def _return_tuple(graph, values) -> None:
    ret = graph.return_node()
    tup = graph.create("prim::TupleConstruct", values)
    tup.output().setType(torch._C.TupleType([v.type() for v in values]))
    tup.insertBefore(ret)
    ret.replaceInput(0, tup.output())


def _remove_unused(graph) -> None:
    """Drop nodes whose outputs nobody uses (module calls included: eval-mode layers have no side
    effects), so the replaced layer's prefix is not computed."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph.nodes())):
            outputs = list(node.outputs())
            if outputs and all(not out.uses() for out in outputs) and not list(node.blocks()):
                node.destroy()
                changed = True
