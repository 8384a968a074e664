"""Backend for an ``nn.Module`` (state_dict + architecture, trusted full pickle, unflattened ``.pt2``).

Gradients start at the gradient layer: the forward runs with autograd off, and a hook on that layer
swaps its output for a leaf that requires grad and turns autograd on, so nothing before the layer
builds a graph and the backward pass runs through the head only.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Mapping, Sequence

import torch
from torch import nn

from .backend import (INPUT, LOGITS, PENULTIMATE, Forward, LayerError, ModelBackend, ModelInfo, ModelRunError,
                      UnknownLayerError, head_input, is_head_input, model_label, running_model)
from .outputs import first_tensor, logits_of
from .probabilities import FROM_SOFTMAX_INPUT, SoftmaxCalls, logits_from


class TorchForward(Forward):
    def __init__(self, logits, activations, grad_layer, leaf, connected):
        self.logits = logits.detach()
        self.activations = {k: v.detach() for k, v in activations.items()}
        self.grad_layer = grad_layer
        self._leaf = leaf
        self._connected = {LOGITS: logits, **connected}

    def vjp(self, cotangents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self._leaf is None:
            raise RuntimeError("this forward was run without a gradient layer")
        return autograd_vjp(self._connected, self._leaf, cotangents, self.grad_layer)


def autograd_vjp(connected, leaf, cotangents, grad_layer) -> torch.Tensor:
    """VJP of the graph-connected outputs back to ``leaf``; outputs that do not depend on it add zero."""
    outputs, grads = [], []
    for name, cot in cotangents.items():
        if name not in connected:
            raise LayerError(f"{name!r} is not downstream of the gradient layer {grad_layer!r}")
        if connected[name].requires_grad:
            outputs.append(connected[name])
            grads.append(cot.to(connected[name].dtype))
    if not outputs:
        return torch.zeros_like(leaf)
    with running_model():
        (grad,) = torch.autograd.grad(outputs, leaf, grads, retain_graph=True, allow_unused=True)
    return torch.zeros_like(leaf) if grad is None else grad.detach()


class TorchModuleBackend(ModelBackend):
    """Any ``nn.Module`` classifier; layers are its module names plus ``PENULTIMATE``."""

    def __init__(self, module: nn.Module, info: ModelInfo, classifier: str | None = None):
        self.module = module.eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.info = info
        self._modules = dict(self.module.named_modules())
        self.classifier = classifier if classifier is not None else find_classifier(self.module, info.num_classes)
        self.other_heads = tuple(head for head in named_heads(self.module, info.num_classes) if head != self.classifier)

    def layer_names(self) -> list[str]:
        names = [name for name in self._modules if name]
        return names + ([PENULTIMATE] if self.classifier else []) + [head_input(h) for h in self.other_heads]

    @torch.no_grad()
    def execution_order(self, x: torch.Tensor, names: Sequence[str]) -> list[str]:
        """``names`` in the order their modules finish, leaving out modules that run more than once or
        return no tensor."""
        calls: dict[str, int] = {}
        order: list[str] = []

        def record(name):
            def hook(_module, _inputs, output):
                calls[name] = calls.get(name, 0) + 1
                if first_tensor(output) is not None and name not in order:
                    order.append(name)
            return hook

        with ExitStack() as stack:
            for name in names:
                stack.enter_context(_Hook(self._modules[name].register_forward_hook(record(name))))
            with running_model():
                self.module(x)
        return [name for name in order if calls[name] == 1]

    def _module_for(self, layer: str) -> nn.Module:
        name = self.classifier if layer == PENULTIMATE else layer
        if layer != PENULTIMATE and is_head_input(layer):
            name = layer.partition(":")[2] if layer.partition(":")[2] in self.other_heads else None
        if name is None or not name or name not in self._modules:
            raise UnknownLayerError(layer, self.layer_names(), model_label(self.info))
        return self._modules[name]

    def forward(self, x: torch.Tensor, layers: Sequence[str] = (), grad_layer: str | None = None) -> Forward:
        captured: dict[str, torch.Tensor] = {}
        connected: dict[str, torch.Tensor] = {}
        state = {"leaf": None}

        def capture(name: str, value: torch.Tensor) -> None:
            captured[name] = value.detach().clone()
            if torch.is_grad_enabled() and state["leaf"] is not None:
                connected[name] = value

        def make_leaf(value: torch.Tensor) -> torch.Tensor:
            leaf = value.detach().requires_grad_(True)
            state["leaf"] = leaf
            captured[grad_layer] = leaf.detach()
            torch.set_grad_enabled(True)
            return leaf.clone()  # later in-place ops must not touch the leaf

        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if grad_layer == INPUT:  # the whole model is differentiated, back to its input
                x = make_leaf(x)
            for name in dict.fromkeys([*layers, *([grad_layer] if grad_layer not in (None, INPUT) else [])]):
                module = self._module_for(name)
                if is_head_input(name):
                    stack.enter_context(_pre_hook(module, name, capture, make_leaf if name == grad_layer else None))
                else:
                    stack.enter_context(_post_hook(module, name, capture, make_leaf if name == grad_layer else None))
            logits = self._logits(x)
        if grad_layer is not None and state["leaf"] is None:
            raise ModelRunError(f"layer {grad_layer!r} did not run during the forward pass")
        missing = [name for name in layers if name not in captured]
        if missing:
            raise ModelRunError(f"layer(s) {', '.join(missing)} did not run during the forward pass")
        return TorchForward(logits, captured, grad_layer, state["leaf"], connected)

    @torch.no_grad()
    def logits_with_replaced(self, x: torch.Tensor, layer: str, activation: torch.Tensor) -> torch.Tensor:
        module = self._module_for(layer)
        batch = x.expand(activation.shape[0], *x.shape[1:])
        replace = lambda _value: activation  # noqa: E731
        hook = _pre_hook if is_head_input(layer) else _post_hook
        with hook(module, layer, lambda *_: None, replace):
            return self._logits(batch).detach()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of ``x`` as decided at load time: the output, the input of the final softmax, or log p."""
        output = self.info.output
        with running_model():
            if output.logits != FROM_SOFTMAX_INPUT:
                return logits_from(logits_of(self.module(x)), output)
            with SoftmaxCalls() as calls:
                result = logits_of(self.module(x))
        found = calls.input_of(result)
        if found is None:
            raise ModelRunError(f"{model_label(self.info) or 'model'}: the final softmax found at load time did not run")
        return found[0]


class _Hook:
    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _post_hook(module, name, capture, replace):
    def hook(_module, _inputs, output):
        value = first_tensor(output)
        if replace is not None:
            new = replace(value)
            capture(name, new)
            return _swap_first_tensor(output, new)
        capture(name, value)
        return None

    return _Hook(module.register_forward_hook(hook))


def _pre_hook(module, name, capture, replace):
    def hook(_module, inputs):
        value = inputs[0].flatten(1)
        if replace is not None:
            new = replace(value)
            capture(name, new)
            return (new.reshape(-1, *inputs[0].shape[1:]), *inputs[1:])
        capture(name, value)
        return None

    return _Hook(module.register_forward_pre_hook(hook))


def _swap_first_tensor(output, new):
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, (tuple, list)):
        return type(output)([new, *output[1:]])
    raise TypeError(f"cannot replace a layer output of type {type(output).__name__}")


def find_classifier(module: nn.Module, num_classes: int) -> str | None:
    """Name of the last linear classifier with ``num_classes`` outputs: its input is the penultimate vector.

    An ``nn.Linear``, or a leaf module that holds just a 2-D ``weight`` (``num_classes`` × features) and
    an optional matching ``bias``: what ``torch.export.unflatten`` gives back for a Linear (an
    ``InterpreterModule``, not an ``nn.Linear``)."""
    named = named_heads(module, num_classes)
    if named:
        return named[0]
    found = None
    for name, child in module.named_modules():
        if name and _is_linear(child, num_classes):
            found = name
    return found


def named_heads(module: nn.Module, num_classes: int) -> list[str]:
    """The classifier heads a timm model names in its ``pretrained_cfg`` (a distilled DeiT: ``head`` and
    ``head_dist``), those that are linear with ``num_classes`` outputs; [] for other models."""
    names = (getattr(module, "pretrained_cfg", None) or {}).get("classifier") if isinstance(
        getattr(module, "pretrained_cfg", None), dict) else None
    names = [names] if isinstance(names, str) else list(names or ())
    modules = dict(module.named_modules())
    return [name for name in names if name in modules and _is_linear(modules[name], num_classes)]


def _is_linear(module: nn.Module, num_classes: int) -> bool:
    if isinstance(module, nn.Linear):
        return module.out_features == num_classes
    if next(module.children(), None) is not None:
        return False
    params = dict(module.named_parameters(recurse=False))
    params.update({k: v for k, v in module.named_buffers(recurse=False) if k in ("weight", "bias")})
    weight, bias = params.get("weight"), params.get("bias")
    if set(params) - {"weight", "bias"} or weight is None or weight.dim() != 2 or weight.shape[0] != num_classes:
        return False
    if type(module).__module__.startswith("torch.nn.modules"):
        return False  # a built-in layer of another kind (Bilinear, Embedding, …)
    return bias is None or tuple(bias.shape) == (num_classes,)
