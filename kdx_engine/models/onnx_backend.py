"""Backend for ONNX files, run in onnxruntime (PRODUCT.md §3).

Activations: the layers' tensors become extra graph outputs, so one run gives logits and activations.
Gradients: the head from the gradient layer onwards is cut and differentiated with onnx-ad
(``onnx_heads``); nothing before the layer is differentiated. A model exported with a fixed batch size
is run in chunks of that size (the last chunk padded), never refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..messages import first_line
from .backend import INPUT, LOGITS, PENULTIMATE, Forward, LayerError, ModelBackend, ModelInfo, UnknownLayerError
from .onnx_graph import OnnxGraph
from .onnx_heads import GRADIENT_FREE_HINT, GradientUnavailable, Head, Heads, make_session, shared_weights
from .probabilities import FROM_LOG, PROBABILITIES, logits_from


class OnnxForward(Forward):
    """Logits, activations, and the forward's tensors a VJP head needs."""

    def __init__(self, backend: "OnnxBackend", values: dict[str, np.ndarray], layers: Sequence[str],
                 grad_layer: str | None):
        self._backend = backend
        self._values = values
        self._layers = set(layers)
        self.grad_layer = grad_layer
        self.logits = logits_from(torch.from_numpy(values[backend.graph.logits_name]), backend.info.output)
        names = dict.fromkeys([*layers, *([grad_layer] if grad_layer else [])])
        self.activations = {name: backend.activation(name, values) for name in names}

    def vjp(self, cotangents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.grad_layer is None:
            raise RuntimeError("this forward was run without a gradient layer")
        backend, graph = self._backend, self._backend.graph
        start = backend.tensor(self.grad_layer)
        downstream = graph.downstream(start)
        seeds: dict[str, np.ndarray] = {}
        for name, cotangent in cotangents.items():
            tensor = graph.logits_name if name == LOGITS else backend.tensor(name)
            if (name != LOGITS and name not in self._layers) or tensor == start or tensor not in downstream:
                raise LayerError(f"{name!r} is not downstream of the gradient layer {self.grad_layer!r}")
            value = cotangent.detach().cpu().numpy().astype(np.float32).reshape(self._values[tensor].shape)
            if name == LOGITS and _log_of_output(backend):  # d log p = dp / p
                value = value / np.maximum(self._values[tensor], np.finfo(np.float32).tiny)
            seeds[tensor] = seeds[tensor] + value if tensor in seeds else value
        outputs = tuple(sorted(seeds))
        shapes = {name: value.shape for name, value in self._values.items()}
        try:
            head = backend.heads.gradient(start, outputs, _chunk_shapes(shapes, backend.graph.fixed_batch))
        except GradientUnavailable as exc:
            raise GradientUnavailable(
                f"{backend.name}: gradients from layer {self.grad_layer!r} cannot be built: {exc}. "
                f"{GRADIENT_FREE_HINT}") from exc
        feeds = {name: self._values[name] for name in head.inputs}
        feeds.update({seed: seeds[tensor][..., None] for seed, tensor in zip(head.seeds, head.outputs)})
        try:
            (gradient,) = backend.run_batched(head, feeds)
        except Exception as exc:  # onnxruntime's own error types, when the gradient graph fails to run
            ops = backend.heads.describe_ops(start, outputs)
            raise GradientUnavailable(
                f"{backend.name}: gradients from layer {self.grad_layer!r} failed in onnxruntime"
                f"{f' (the head holds {ops})' if ops else ''}: {first_line(exc)}. {GRADIENT_FREE_HINT}") from exc
        return torch.from_numpy(gradient[..., 0]).reshape(self.activations[self.grad_layer].shape)


class OnnxBackend(ModelBackend):
    """An ONNX classifier in onnxruntime (CPU); gradients through onnx-ad heads."""

    def __init__(self, graph: OnnxGraph, info: ModelInfo, threads: int | None = None):
        self.graph = graph
        self.info = info
        self.name = Path(info.path).name
        self.threads = threads or torch.get_num_threads()
        self.shared = shared_weights(graph.model)
        self.heads = Heads(graph, info.sha256, self.threads, self.shared)
        self._sessions: dict[tuple[str, ...], Head] = {}

    def layer_names(self) -> list[str]:
        return list(self.graph.layers) + ([PENULTIMATE] if self.graph.penultimate else [])

    def execution_order(self, x: torch.Tensor, names: Sequence[str]) -> list[str]:
        """``names`` in graph (topological) order; for one tensor, inner modules before outer ones."""
        known = [name for name in names if name == PENULTIMATE or name in self.graph.layers
                 or name in self.graph.producer]
        position = {name: index for index, name in enumerate(self.layer_names())}
        return sorted(known, key=lambda name: (self.graph.order_key(self.tensor(name)), position.get(name, -1)))

    def tensor(self, layer: str) -> str:
        if layer == INPUT:
            return self.graph.input_name
        if layer == PENULTIMATE:
            if self.graph.penultimate is None:
                raise UnknownLayerError(layer, self.layer_names(), self.name)
            return self.graph.penultimate
        try:
            return self.graph.tensor(layer)
        except UnknownLayerError:
            raise UnknownLayerError(layer, self.layer_names(), self.name) from None

    def activation(self, layer: str, values: dict[str, np.ndarray]) -> torch.Tensor:
        value = torch.from_numpy(values[self.tensor(layer)])
        return value.flatten(1) if layer == PENULTIMATE else value

    def forward(self, x: torch.Tensor, layers: Sequence[str] = (), grad_layer: str | None = None) -> Forward:
        layers = list(dict.fromkeys(layers))
        tensors = [self.tensor(name) for name in [*layers, *([grad_layer] if grad_layer else [])]]
        if grad_layer is not None:
            start = self.tensor(grad_layer)
            downstream = self.graph.downstream(start)
            outputs = tuple(sorted({self.graph.logits_name, *(t for t in tensors if t in downstream and t != start)}))
            tensors += self.heads.side_inputs(start, outputs)
        array = _as_array(x)
        values = self.run_model(array, [t for t in tensors if t != self.graph.input_name])
        values[self.graph.input_name] = array  # the input itself (INPUT): fed, not computed
        return OnnxForward(self, values, layers, grad_layer)

    def run_model(self, x: np.ndarray, tensors: Sequence[str]) -> dict[str, np.ndarray]:
        """Logits and ``tensors`` for the batch ``x``: one onnxruntime run (per fixed-batch chunk)."""
        outputs = tuple(dict.fromkeys([self.graph.logits_name, *tensors]))
        if outputs not in self._sessions:
            model = self.graph.with_outputs(outputs)
            self._sessions[outputs] = Head(make_session(model, self.threads, self.shared), (self.graph.input_name,), outputs)
        head = self._sessions[outputs]
        return dict(zip(head.outputs, self.run_batched(head, {self.graph.input_name: x})))

    def run_batched(self, head: Head, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run ``head``; with a fixed-batch model, in chunks of that batch (the last one padded)."""
        fixed = self.graph.fixed_batch
        batched = [name for name, value in feeds.items() if _is_batched(value)]
        total = feeds[batched[0]].shape[0] if batched else 0
        if not fixed or not batched or total == fixed:
            return head.run(feeds)
        parts = []
        for start in range(0, total, fixed):
            chunk = dict(feeds)
            for name in batched:
                piece = feeds[name][start:start + fixed]
                pad = fixed - piece.shape[0]
                chunk[name] = np.concatenate([piece, np.repeat(piece[-1:], pad, axis=0)]) if pad else piece
            parts.append([out[:min(fixed, total - start)] for out in head.run(chunk)])
        return [np.concatenate(outs) for outs in zip(*parts)]

    def logits_with_replaced(self, x: torch.Tensor, layer: str, activation: torch.Tensor) -> torch.Tensor:
        start = self.tensor(layer)
        head = self.heads.plain(start, (self.graph.logits_name,))
        value = _as_array(activation)
        shape = self.graph.types[start].shape
        if layer == PENULTIMATE and shape and all(shape[1:]):
            value = value.reshape(value.shape[0], *shape[1:])
        feeds = {start: value}
        if len(head.inputs) > 1:
            batch = _as_array(x).repeat(value.shape[0], axis=0)
            feeds.update(self.run_model(batch, head.inputs[1:]))
            feeds = {name: feeds[name] for name in head.inputs}
        (logits,) = self.run_batched(head, feeds)
        return logits_from(torch.from_numpy(logits), self.info.output)



def _log_of_output(backend: OnnxBackend) -> bool:
    return backend.info.output.kind == PROBABILITIES and backend.info.output.logits == FROM_LOG


def _as_array(value: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(value.detach().cpu().numpy(), dtype=np.float32)


def _is_batched(value: np.ndarray) -> bool:
    """Floating tensors of rank ≥ 2 carry the batch; integer side tensors (shapes) do not."""
    return value.ndim >= 2 and np.issubdtype(value.dtype, np.floating)


def _chunk_shapes(shapes: dict[str, tuple[int, ...]], fixed_batch: int | None) -> dict[str, tuple[int, ...]]:
    """Shapes a head is built for: with a fixed-batch model, one chunk's."""
    if not fixed_batch:
        return shapes
    return {name: (fixed_batch, *shape[1:]) if len(shape) >= 2 else shape for name, shape in shapes.items()}
