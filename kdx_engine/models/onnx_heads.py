"""Heads of an ONNX classifier: the graph from a layer to the logits (or to later layers), cut with
``onnx.utils.Extractor``, run in onnxruntime, and differentiated with onnx-ad (PRODUCT.md §3).

A head's inputs are the layer's tensor plus any "side" tensors computed before the layer that the head
still reads (a skip connection that bypasses the layer, a shape taken from the input); side tensors are
constants of the VJP, as the part before the gradient layer is in the PyTorch backend.
onnx-ad's reverse mode needs declared shapes for convolutions and pooling windows, so a head holding
those is built for the concrete input shapes (one build per shape); a pooling + Gemm head stays dynamic.
Built heads are cached per (model sha256, kind, layer, outputs, input shape).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ad
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference, utils

from ..messages import first_line
from .backend import running_model
from .onnx_graph import OnnxGraph

SHAPE_BOUND_OPS = frozenset({"Conv", "ConvTranspose", "AveragePool", "LpPool", "MaxPool", "DepthToSpace",
                             "SpaceToDepth", "GridSample", "DeformConv"})
STANDARD_DOMAINS = ("", "ai.onnx")
CONTROL_FLOW_OPS = frozenset({"Loop", "Scan", "If", "SequenceMap"})
CACHE_SIZE = 32
GRADIENT_FREE_HINT = ("Gradient-free methods still work: Score-CAM and Ablation-CAM "
                      "(--method scorecam, --method ablationcam)")


class GradientUnavailable(RuntimeError, ValueError):
    """onnx-ad cannot differentiate a head (an operator without a reverse rule, or one it refuses).
    A ``ValueError`` too, so command lines report it as bad input; a ``RuntimeError`` for older callers."""


@dataclass(frozen=True)
class Head:
    """A built head: its session, input names (layer first, then side tensors), outputs, and for a
    gradient head the seed inputs (one per output) and the gradient output."""

    session: ort.InferenceSession
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    seeds: tuple[str, ...] = ()
    gradient: str | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        wanted = [self.gradient] if self.gradient else list(self.outputs)
        with running_model():
            return self.session.run(wanted, feeds)


_CACHE: OrderedDict[tuple, Head] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_head_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def make_session(model: onnx.ModelProto, threads: int | None = None,
                 shared: dict[str, ort.OrtValue] | None = None) -> ort.InferenceSession:
    """A CPU onnxruntime session for an in-memory model. Initializers found in ``shared`` are handed
    over as OrtValues instead of being serialised with the graph (sessions then build in a fraction
    of the time)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions; nothing printed on stderr
    if threads:
        options.intra_op_num_threads = threads
    if shared:
        model, names = _without_shared_weights(model, shared)
        if names:
            options.add_external_initializers(names, [shared[name] for name in names])
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def shared_weights(model: onnx.ModelProto, min_bytes: int = 4096) -> dict[str, ort.OrtValue]:
    """The model's larger initializers as OrtValues, to be shared by all its sessions."""
    found = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL and len(tensor.raw_data) >= min_bytes:
            found[tensor.name] = ort.OrtValue.ortvalue_from_numpy(numpy_helper.to_array(tensor))
    return found


def _without_shared_weights(model: onnx.ModelProto, shared) -> tuple[onnx.ModelProto, list[str]]:
    light = onnx.ModelProto()
    light.CopyFrom(model)
    names = []
    for tensor in light.graph.initializer:
        if tensor.name in shared:
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            del tensor.external_data[:]
            tensor.external_data.add(key="location", value="kdx-shared-weights")
            names.append(tensor.name)
    return light, names


class Heads:
    """Builds (and caches) the heads of one model."""

    def __init__(self, graph: OnnxGraph, sha256: str, threads: int | None = None,
                 shared: dict[str, ort.OrtValue] | None = None):
        self.graph = graph
        self.sha256 = sha256
        self.threads = threads
        self.shared = shared
        self._extractor = utils.Extractor(graph.inferred)
        self._input_dependent = graph.downstream(graph.input_name)
        self._nodes_of: dict[tuple, list] = {}
        self._needs_shapes: set[tuple] = set()

    def side_inputs(self, start: str, outputs: tuple[str, ...]) -> tuple[str, ...]:
        """Tensors computed from the model input before ``start`` that the head reads."""
        nodes = self._head_nodes(start, outputs)
        produced = {name for node in nodes for name in node.output}
        read = dict.fromkeys(name for node in nodes for name in node.input if name)
        return tuple(name for name in read if name != start and name not in produced
                     and name in self._input_dependent and name not in self.graph.initializers)

    def _head_nodes(self, start: str, outputs: tuple[str, ...]):
        if (start, outputs) not in self._nodes_of:
            self._nodes_of[(start, outputs)] = self._find_head_nodes(start, outputs)
        return self._nodes_of[(start, outputs)]

    def _find_head_nodes(self, start: str, outputs: tuple[str, ...]):
        downstream = self.graph.downstream(start)
        needed = set(outputs)
        nodes = []
        for node in reversed(self.graph.nodes):
            if any(name in needed for name in node.output) and any(name in downstream for name in node.output):
                nodes.append(node)
                needed.update(name for name in node.input if name in downstream)
        return nodes

    def plain(self, start: str, outputs: tuple[str, ...]) -> Head:
        """The head as a forward function of its inputs (what Ablation-CAM's replaced logits need)."""
        key = (self.sha256, "plain", start, outputs, None)
        return _cached(key, lambda: self._build_plain(start, outputs))

    def _build_plain(self, start, outputs) -> Head:
        inputs = (start, *self.side_inputs(start, outputs))
        return Head(make_session(self._extract(inputs, outputs), self.threads, self.shared), inputs, outputs)

    def gradient(self, start: str, outputs: tuple[str, ...], shapes: dict[str, tuple[int, ...]]) -> Head:
        """The head's VJP: inputs, then one seed per output (shaped like it, plus a trailing 1), giving
        the gradient at ``start``. ``shapes`` are the concrete input shapes, used when the head needs them."""
        inputs = (start, *self.side_inputs(start, outputs))
        nodes = self._head_nodes(start, outputs)
        foreign = [node for node in reversed(nodes) if node.domain not in STANDARD_DOMAINS]
        if foreign:
            listed = _op_list(foreign)
            raise GradientUnavailable(f"operator{'s' if len(foreign) > 1 else ''} {listed} "
                                      f"{'are' if len(foreign) > 1 else 'is'} outside the standard ONNX domain; "
                                      f"onnx-ad has no reverse rule for {'them' if len(foreign) > 1 else 'it'}")
        if not {node.op_type for node in nodes} & SHAPE_BOUND_OPS and (start, outputs) not in self._needs_shapes:
            try:
                return _cached((self.sha256, "vjp", start, outputs, None),
                               lambda: self._build_gradient(self._extract(inputs, outputs), inputs, outputs))
            except GradientUnavailable as exc:
                if "declare" not in str(exc):  # "declared shapes", "declare the shape": retry with shapes
                    raise
                self._needs_shapes.add((start, outputs))
        shape_key = tuple(shapes[name] for name in inputs)
        return _cached((self.sha256, "vjp", start, outputs, shape_key),
                       lambda: self._build_gradient(with_input_shapes(self._extract(inputs, outputs), shapes),
                                                    inputs, outputs))

    def describe_ops(self, start: str, outputs: tuple[str, ...]) -> str:
        """The head's operators onnx-ad is likely to fail on (control flow, non-standard domains), or ''."""
        nodes = [node for node in reversed(self._head_nodes(start, outputs))
                 if node.op_type in CONTROL_FLOW_OPS or node.domain not in STANDARD_DOMAINS]
        return _op_list(nodes)

    def _extract(self, inputs, outputs) -> onnx.ModelProto:
        return self._extractor.extract_model(list(inputs), list(outputs))

    def _build_gradient(self, head: onnx.ModelProto, inputs, outputs) -> Head:
        try:
            derivative = onnx_ad.reverse(head, inputs=[inputs[0]], outputs=list(outputs), layout="onnx")
        except (onnx_ad.UnsupportedOperator, onnx_ad.UnrollTooLarge) as exc:
            raise GradientUnavailable(f"{_with_ops(str(exc), self._ops_in(head))}") from exc
        except Exception as exc:  # onnx-ad failing inside a rule: report, never crash
            raise GradientUnavailable(_with_ops(f"onnx-ad failed ({type(exc).__name__}: {exc})",
                                                self._ops_in(head))) from exc
        seeds = tuple(value.name for value in derivative.graph.input[len(head.graph.input):])
        gradient = derivative.graph.output[-1].name
        try:
            session = make_session(derivative, self.threads, self.shared)
        except Exception as exc:  # onnxruntime's own error types: report, never crash
            raise GradientUnavailable(_with_ops(f"onnxruntime cannot run the gradient graph ({first_line(exc)})",
                                                self._ops_in(head))) from exc
        return Head(session, inputs, outputs, seeds, gradient)

    @staticmethod
    def _ops_in(head: onnx.ModelProto) -> str:
        return _op_list([node for node in head.graph.node
                         if node.op_type in CONTROL_FLOW_OPS or node.domain not in STANDARD_DOMAINS])


def _op_list(nodes) -> str:
    """``Loop (node 'loop'), com.microsoft.FastGelu (node 'fg')``, each operator once."""
    seen: dict[str, str] = {}
    for node in nodes:
        op = f"{node.domain}.{node.op_type}" if node.domain not in STANDARD_DOMAINS else node.op_type
        seen.setdefault(op, node.name or (node.output[0] if node.output else "?"))
    return ", ".join(f"{op} (node '{name}')" for op, name in seen.items())


def _with_ops(message: str, ops: str) -> str:
    return f"{message}; the head holds {ops}" if ops else message



def _cached(key: tuple, build) -> Head:
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    head = build()
    with _CACHE_LOCK:
        _CACHE[key] = head
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return head


def with_input_shapes(head: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of ``head`` with concrete input shapes, shapes re-inferred, and pooling windows that
    fit exactly written without ``ceil_mode`` (onnx-ad refuses ceil_mode; the result is the same)."""
    model = onnx.ModelProto()
    model.CopyFrom(head)
    graph = model.graph
    for value in graph.input:
        if value.name in shapes:
            value.type.tensor_type.shape.CopyFrom(helper.make_tensor_type_proto(1, shapes[value.name]).tensor_type.shape)
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    model = shape_inference.infer_shapes(model, data_prop=True)
    _drop_exact_ceil_mode(model)
    return model


def _drop_exact_ceil_mode(model: onnx.ModelProto) -> None:
    shapes = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
              for value in [*model.graph.input, *model.graph.value_info]}
    for node in model.graph.node:
        if node.op_type not in ("AveragePool", "MaxPool"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        shape = shapes.get(node.input[0])
        if not attrs.get("ceil_mode") or not shape or not all(shape[2:]):
            continue
        kernel = attrs["kernel_shape"]
        spatial = len(kernel)
        strides = attrs.get("strides", [1] * spatial)
        pads = attrs.get("pads", [0] * (2 * spatial))
        dilations = attrs.get("dilations", [1] * spatial)
        exact = all((shape[2 + i] + pads[i] + pads[i + spatial] - dilations[i] * (kernel[i] - 1) - 1) % strides[i] == 0
                    for i in range(spatial))
        if exact:
            kept = [a for a in node.attribute if a.name != "ceil_mode"]
            del node.attribute[:]
            node.attribute.extend(kept)
