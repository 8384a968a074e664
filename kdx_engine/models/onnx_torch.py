"""Optional route for ONNX files: convert the graph to PyTorch with onnx2torch (PRODUCT.md §3).

Used only when onnx2torch is installed, converts every node, and the converted module's logits match
onnxruntime's to 1e-4; then autograd replaces onnx-ad. Layer names stay those of the ONNX backend:
each maps to the converted submodule that produces the layer's tensor.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import warnings
from typing import Sequence

import torch
from torch import nn

from .backend import PENULTIMATE, ModelInfo
from .onnx_backend import OnnxBackend
from .torch_backend import TorchModuleBackend

LOGITS_TOLERANCE = 1e-4


class Onnx2TorchBackend(TorchModuleBackend):
    """An onnx2torch module behind the ONNX backend's layer names."""

    def __init__(self, module: nn.Module, info: ModelInfo, layer_modules: dict[str, str], classifier: str | None):
        self.layer_modules = layer_modules
        super().__init__(module, info, classifier=classifier)

    def layer_names(self) -> list[str]:
        return list(self.layer_modules) + ([PENULTIMATE] if self.classifier else [])

    def execution_order(self, x: torch.Tensor, names: Sequence[str]) -> list[str]:
        order = self.layer_names()
        return [name for name in order if name in set(names)]

    def _module_for(self, layer: str) -> nn.Module:
        if layer != PENULTIMATE and layer in self.layer_modules:
            return self._modules[self.layer_modules[layer]]
        return super()._module_for(layer)


def onnx2torch_backend(source: OnnxBackend) -> tuple[Onnx2TorchBackend | None, str]:
    """The converted backend, or None and the reason it was not used."""
    try:
        import onnx2torch
    except ImportError:
        return None, "onnx2torch is not installed"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = onnx2torch.convert(source.graph.model, attach_onnx_mapping=True).eval()
    except Exception as exc:  # onnx2torch raises many error types for ops it cannot convert
        return None, f"onnx2torch cannot convert it ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
    producers = _tensor_producers(module)
    graph = source.graph
    layer_modules = {layer: producers[tensor] for layer, tensor in graph.layers.items() if tensor in producers}
    classifier = None
    if graph.penultimate is not None:
        gemm = graph.nodes[min(graph.consumers[graph.penultimate])]
        classifier = producers.get(gemm.output[0])
    size = source.info.preprocessing.input_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            converted = module(x)
    except Exception as exc:  # a converted op failing at run time
        return None, f"the converted module fails ({exc})"
    difference = float((converted - source.logits(x)).abs().max())
    if not difference <= LOGITS_TOLERANCE:
        return None, f"converted logits differ from onnxruntime's by {difference:.2g} (> {LOGITS_TOLERANCE})"
    version = importlib.metadata.version("onnx2torch")
    note = f"route: onnx2torch {version} (logits match onnxruntime to {difference:.1g}), gradients by autograd"
    info = dataclasses.replace(source.info, backend="onnx2torch",
                               notes=(*[n for n in source.info.notes if not n.startswith("route:")], note))
    return Onnx2TorchBackend(module, info, layer_modules, classifier), ""


def _tensor_producers(module: nn.Module) -> dict[str, str]:
    """ONNX tensor name → name of the converted submodule whose first output it is."""
    producers = {}
    for name, child in module.named_modules():
        mapping = getattr(child, "onnx_mapping", None)
        if mapping is not None and mapping.outputs:
            producers[mapping.outputs[0]] = name
    return producers
