"""Reading an ONNX file safely and finding its layers structurally (PRODUCT.md §3).

Layers are graph tensors. When the exporter kept PyTorch module names (the legacy exporter's
``/layer4/layer4.1/relu_1/Relu`` node names, the dynamo exporter's ``pkg.torch.onnx.name_scopes``
metadata), a module's layer is the one floating-point tensor its nodes hand to the rest of the graph;
modules called more than once, or with no such single tensor, are left out (as the PyTorch backend
leaves out modules that run twice). Both exporters fold BatchNorm into the convolution before it: the
legacy one names the folded tensor after the convolution, the dynamo one after the BatchNorm, so the
other module of the pair has no layer. Without names, every floating-point node output is a layer under
its tensor name.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto, external_data_helper, helper, shape_inference

from ..messages import first_line
from .backend import UnknownLayerError

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
CLASSIFIER_OPS = ("Gemm", "MatMul")
_CALL_SUFFIX = re.compile(r"^(.+)_(\d+)$")


class OnnxGraphError(ValueError):
    """The file is not a usable ONNX classifier; the message says why (without the file name)."""


def read_onnx(path: Path) -> onnx.ModelProto:
    """The model with its weights, after refusing external-data paths that leave the model's folder."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError family on garbage
        raise OnnxGraphError(f"not an ONNX model (cannot be parsed: {first_line(exc)})") from exc
    if not model.HasField("graph") or not model.graph.node or not model.graph.output:
        raise OnnxGraphError("not an ONNX model (no graph, nodes or outputs: truncated or another format)")
    folder = path.resolve().parent
    for location in external_locations(model):
        if not location or "\x00" in location:
            raise OnnxGraphError(f"external data path {location!r} is empty or holds a NUL byte; refused")
        try:
            target = (folder / location).resolve()
            outside = Path(location).is_absolute() or not target.is_relative_to(folder)
            present = not outside and target.is_file()
        except (OSError, ValueError) as exc:  # a name the file system cannot take (too long, bad bytes)
            raise OnnxGraphError(f"external data path {location!r} is not a usable file name ({exc})") from exc
        if outside:
            raise OnnxGraphError(f"external data path {location!r} points outside the model's folder; refused")
        if not present:
            raise OnnxGraphError(f"external data file {location!r} is missing next to the model")
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise OnnxGraphError(f"invalid ONNX model ({first_line(exc)})") from exc
    return model


def external_locations(model: onnx.ModelProto) -> list[str]:
    """The ``location`` of every tensor stored outside the file (initializers and Constant attributes)."""
    found = []
    for tensor in external_data_helper._get_all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            found.append(entries.get("location", ""))
    return found


@dataclass(frozen=True)
class TensorType:
    """Element type and shape (ints, or None where symbolic) of a tensor after shape inference."""

    elem_type: int
    shape: tuple[int | None, ...] | None

    @property
    def is_float(self) -> bool:
        return self.elem_type in FLOAT_TYPES


class OnnxGraph:
    """Structure of a classifier graph: input, logits, penultimate tensor, layers and their order."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        _negative_dims_as_symbols(model)
        try:
            self.inferred = shape_inference.infer_shapes(model, data_prop=True)
        except Exception as exc:
            raise OnnxGraphError(f"shape inference failed ({first_line(exc)})") from exc
        graph = self.inferred.graph
        self.nodes = list(graph.node)
        self.initializers = {tensor.name for tensor in graph.initializer}
        self.types = _tensor_types(graph)
        inputs = [value.name for value in graph.input if value.name not in self.initializers]
        if len(inputs) != 1:
            raise OnnxGraphError(f"the model takes {len(inputs)} inputs; KDX explains classifiers with one image input")
        self.input_name = inputs[0]
        input_shape = self.types[self.input_name].shape
        if input_shape is None or len(input_shape) != 4:
            raise OnnxGraphError(f"the model input has shape {input_shape}; expected N×C×H×W")
        self.input_shape = input_shape
        self.output_name = graph.output[0].name
        self.producer = {name: index for index, node in enumerate(self.nodes) for name in node.output if name}
        softmax = self._final_softmax()
        self.final_softmax = (softmax.name or softmax.output[0], softmax.op_type) if softmax is not None else None
        self.logits_name = softmax.input[0] if softmax is not None else self.output_name
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for name in node.input:
                self.consumers.setdefault(name, []).append(index)
        self.penultimate = self._penultimate()
        self.named_by_module = _has_module_names(self.nodes)
        self.layers = self._module_layers() if self.named_by_module else self._tensor_layers()

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model was exported with, when it is not dynamic."""
        return self.input_shape[0]

    @property
    def fixed_size(self) -> int | None:
        """The square input size fixed in the graph, or None when it is dynamic."""
        height, width = self.input_shape[2:]
        return height if height is not None and height == width else None

    def _final_softmax(self):
        """The Softmax/LogSoftmax node over the classes whose result is the model's output (through
        Identity nodes): its input is then the logits. None when the output is not a softmax's."""
        index = self.producer.get(self.output_name)
        while index is not None and self.nodes[index].op_type == "Identity":
            index = self.producer.get(self.nodes[index].input[0])
        node = self.nodes[index] if index is not None else None
        if node is None or node.op_type not in ("Softmax", "LogSoftmax") or node.domain not in ("", "ai.onnx"):
            return None
        opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 13)
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"),
                    -1 if opset >= 13 else 1)
        shape = self.types.get(node.input[0], TensorType(0, None)).shape
        over_classes = axis == 1 or (axis == -1 and (shape is None or len(shape) == 2))
        return node if over_classes else None

    def tensor(self, layer: str) -> str:
        """The graph tensor behind a layer name (a module name, or a tensor name itself)."""
        if layer in self.layers:
            return self.layers[layer]
        if layer in self.producer and self.types.get(layer, TensorType(0, None)).is_float:
            return layer
        raise UnknownLayerError(layer, list(self.layers), what="layer")

    def with_outputs(self, names) -> onnx.ModelProto:
        """A copy of the model that also returns the tensors ``names``."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        existing = {value.name for value in model.graph.output}
        for name in dict.fromkeys(names):
            if name not in existing:
                elem_type = self.types.get(name, TensorType(TensorProto.FLOAT, None)).elem_type
                model.graph.output.append(helper.make_tensor_value_info(name, elem_type, None))
        return model

    def order_key(self, tensor: str) -> int:
        return self.producer.get(tensor, -1)

    def downstream(self, tensor: str) -> set[str]:
        """Every tensor computed from ``tensor`` (itself included)."""
        live = {tensor}
        for node in self.nodes[self.order_key(tensor) + 1:]:
            if any(name in live for name in node.input):
                live.update(name for name in node.output if name)
        return live

    def _penultimate(self) -> str | None:
        """The activation input of the last Gemm/MatMul on the way to the logits; where several reach the
        logits with no other between (a distilled DeiT's ``head`` and ``head_dist``, averaged), the first
        one's, as the PyTorch backend takes the main head."""
        ancestors = self._ancestors(self.logits_name)
        classifiers = []
        for index in sorted(ancestors, reverse=True):
            node = self.nodes[index]
            if node.op_type in CLASSIFIER_OPS:
                operands = [name for name in node.input[:2] if name not in self.initializers and name in self.producer]
                if len(operands) == 1:
                    classifiers.append((index, operands[0]))
        if not classifiers:
            return None
        last, operand = classifiers[0]
        for index, other in classifiers[1:]:
            if any(name in self.downstream(self.nodes[index].output[0]) for name in self.nodes[last].input[:2]):
                break  # this one feeds the last classifier: an earlier layer of the head, not a parallel head
            operand = other
        return operand

    def _ancestors(self, tensor: str) -> set[int]:
        found: set[int] = set()
        stack = [tensor]
        while stack:
            index = self.producer.get(stack.pop())
            if index is not None and index not in found:
                found.add(index)
                stack.extend(name for name in self.nodes[index].input if name)
        return found

    def _tensor_layers(self) -> dict[str, str]:
        return {name: name for node in self.nodes for name in node.output
                if name and self.types.get(name, TensorType(0, None)).is_float}

    def _module_layers(self) -> dict[str, str]:
        """Module name → its single escaping float tensor, in execution order (inner modules first)."""
        scopes = _module_scopes(self.nodes)
        members: dict[str, set[int]] = {}
        for index, path in enumerate(scopes):
            for module in path:
                members.setdefault(module, set()).add(index)
        outputs = {value.name for value in self.inferred.graph.output}
        found: list[tuple[int, int, str, str]] = []
        for module, indices in members.items():
            escaping = {
                name for index in indices for name in self.nodes[index].output
                if name and self.types.get(name, TensorType(0, None)).is_float
                and (name in outputs or any(c not in indices for c in self.consumers.get(name, ())))
            }
            if len(escaping) == 1:
                tensor = escaping.pop()
                found.append((self.order_key(tensor), -module.count("."), module, tensor))
        return {module: tensor for _, _, module, tensor in sorted(found)}


def _negative_dims_as_symbols(model: onnx.ModelProto) -> None:
    """Dimensions written as −1 (paddle2onnx) or another value below 1 are dynamic: made symbolic in place,
    so the batch is not read as a fixed batch of −1 and shape inference does not carry −1 on."""
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if not value.type.tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value < 1:
                dim.dim_param = f"{value.name}_dim{axis}"  # setting dim_param clears dim_value (a oneof)


def _has_module_names(nodes) -> bool:
    return any(path for path in _module_scopes(nodes))


def _module_scopes(nodes) -> list[tuple[str, ...]]:
    """For each node, the full names of the modules it ran in, outermost first."""
    scopes = [_metadata_scope(node) for node in nodes]
    if any(scopes):
        return scopes
    return _legacy_scopes([_legacy_parts(node) for node in nodes])


def _metadata_scope(node) -> tuple[str, ...]:
    """Full module names from the dynamo exporter's metadata (the last entry is the op, not a module)."""
    props = {prop.key: prop.value for prop in node.metadata_props}
    if "pkg.torch.onnx.name_scopes" in props:
        try:
            scopes = ast.literal_eval(props["pkg.torch.onnx.name_scopes"])
        except (ValueError, SyntaxError):
            return ()
        return tuple(str(s) for s in scopes[1:-1] if s)
    if "namespace" in props:
        parts = [entry.split(":")[0].strip() for entry in props["namespace"].split("/")]
        return tuple(p for p in parts[1:-1] if p)
    return ()


def _legacy_parts(node) -> tuple[str, ...]:
    """Scope components of a legacy node name ``/layer2/layer2.0/downsample/downsample.0/Conv``."""
    if not node.name.startswith("/"):
        return ()
    return tuple(p for p in node.name.split("/")[1:-1] if p)


def _legacy_scopes(raw: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Full module names from legacy components. A component shows the child's own attribute name,
    prefixed by its container's name when that name is an index (``layer2.0``, ``conv.0.0``), so the
    last dotted atom appended to the parent's full name gives the child's. ``relu_1`` beside ``relu``
    is that module's second call."""
    siblings = {(path[:depth], part) for path in raw for depth, part in enumerate(path)}
    scopes = []
    for path in raw:
        full: list[str] = []
        for depth, part in enumerate(path):
            match = _CALL_SUFFIX.match(part)
            if match and (path[:depth], match.group(1)) in siblings:
                part = match.group(1)
            full.append(f"{full[-1]}.{part.rsplit('.', 1)[-1]}" if full else part)
        scopes.append(tuple(full))
    return scopes


def _tensor_types(graph) -> dict[str, TensorType]:
    types = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        shape = None
        if tensor_type.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
        types[value.name] = TensorType(tensor_type.elem_type, shape)
    for tensor in graph.initializer:
        types[tensor.name] = TensorType(tensor.data_type, tuple(tensor.dims))
    return types
