"""The one interface every model backend (PyTorch, TorchScript, torch.export, ONNX) implements.

Every CAM method, UniCAM and FSS/RS is written against this interface only, so a model in any format
gets every method without a second implementation.

Layer names are module names (``layer4``, ``features.18``) plus the special name
``PENULTIMATE`` for the pooled vector that enters the final classifier. ``INPUT`` names the model input
itself: as a ``grad_layer`` it gives VJPs back to the (preprocessed) input, what input-space methods
(the entropy maps of METHODS §6) need.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .preprocessing import Preprocessing
from .probabilities import LOGITS_OUTPUT, OutputKind

LOGITS = "logits"
PENULTIMATE = "@penultimate"
INPUT = "@input"
SHOWN_LAYERS = 12


def head_input(head: str) -> str:
    """The layer name of the vector entering classifier head ``head`` of a model with several (a DeiT's
    ``head_dist``, whose input is the distillation token); ``PENULTIMATE`` is the main head's input."""
    return f"{PENULTIMATE}:{head}"


def is_head_input(layer: str) -> bool:
    return layer == PENULTIMATE or layer.startswith(PENULTIMATE + ":")


class LayerError(KeyError, ValueError):
    """A layer name that cannot be used; catchable as ``KeyError`` (older callers) and as ``ValueError``
    (bad input). ``str()`` is the plain message, without the quotes ``KeyError`` adds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class UnknownLayerError(LayerError):
    """The model has no layer of that name; the message lists the valid ones (shortened when long)."""

    def __init__(self, layer: str, valid: Sequence[str] = (), model: str | None = None, what: str = "layer"):
        self.layer, self.valid, self.model = layer, tuple(valid), model
        prefix = f"{model}: " if model else ""
        super().__init__(f"{prefix}model has no {what} {layer!r}; valid layers: {shorten_names(self.valid)}")


class ModelRunError(RuntimeError):
    """The model itself failed while running: whatever its forward or backward raised (a shape it cannot
    take, onnxruntime's own errors, …), as one type. Callers that show a failure beside the other models'
    results catch this (and ValueError for bad input); any other exception is a bug of KDX's own."""


@contextmanager
def running_model():
    """Run the model's own code inside: its errors become ``ModelRunError`` (the message kept), KDX's
    bad-input errors (``ValueError``) and ``ModelRunError`` pass through."""
    try:
        yield
    except (ModelRunError, ValueError):
        raise
    except Exception as exc:  # a user's model, TorchScript or onnxruntime may raise any type
        raise ModelRunError(str(exc).strip() or type(exc).__name__) from exc


MODEL_ERRORS = (ValueError, ModelRunError)  # what a comparison or a scan reports as a model's failure


def shorten_names(names: Sequence[str], limit: int = SHOWN_LAYERS) -> str:
    """``a, b, c`` or, past ``limit`` names, the first and last few with the total count."""
    names = list(names)
    if not names:
        return "(none)"
    if len(names) <= limit:
        return ", ".join(names)
    head, tail = names[: limit - 3], names[-2:]
    return f"{', '.join(head)}, …, {', '.join(tail)} ({len(names)} in all)"


def model_label(info: "ModelInfo | None") -> str | None:
    """The model file's name for messages (None for an in-memory model)."""
    if info is None or not info.path or info.path.startswith("<"):
        return None
    return Path(info.path).name


CHW, HWC, TOKENS = "chw", "hwc", "tokens"  # how a layer's output lies on the image (LayerInfo.layout)


@dataclass(frozen=True)
class LayerInfo:
    """A candidate layer for a picker: its name, output shape for one image (C×H×W, H×W×C for a Swin stage,
    T×C for transformer tokens, or D) and stride. ``layout`` says how the output lies on the image grid
    (``CHW``, ``HWC``, ``TOKENS``; None: not an image), ``grid`` its h×w and ``prefix_tokens`` the class
    (and distillation) tokens before the patch tokens. Without a layout, a C×H×W shape is taken as ``CHW``."""

    name: str
    shape: tuple[int, ...]
    stride: int | None
    layout: str | None = ""
    grid: tuple[int, int] | None = None
    prefix_tokens: int = 0

    def __post_init__(self) -> None:
        if self.layout == "":
            chw = len(self.shape) == 3
            object.__setattr__(self, "layout", CHW if chw else None)
            object.__setattr__(self, "grid", tuple(self.shape[1:]) if chw else None)

    @property
    def is_spatial(self) -> bool:
        return self.layout is not None and self.grid is not None and self.grid[0] * self.grid[1] > 1


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: shown by ``kdx info`` and in the window's model slot."""

    path: str
    format: str
    backend: str
    architecture: str | None
    num_classes: int
    num_parameters: int | None
    preprocessing: Preprocessing
    sha256: str
    notes: tuple[str, ...] = ()
    output: OutputKind = LOGITS_OUTPUT  # logits, or probabilities explained at the softmax's input
    preprocessing_origin: str = ""  # where the preprocessing came from, one line ("no sidecar: ImageNet preset, 224 px")

    def record(self) -> dict:
        """What every output file records of the model (METHODS §9): file, hash, format, backend,
        architecture, preprocessing with its source and origin, output kind, notes."""
        return {"file": self.path, "sha256": self.sha256, "format": self.format, "backend": self.backend,
                "architecture": self.architecture,
                "preprocessing": {**self.preprocessing.to_json(), "source": self.preprocessing.source},
                "preprocessing_origin": self.preprocessing_origin, "output": self.output.to_json(),
                "notes": list(self.notes)}


class Forward(ABC):
    """One forward pass: logits and requested activations, and VJPs back to the gradient layer."""

    logits: torch.Tensor
    activations: dict[str, torch.Tensor]
    grad_layer: str | None

    @abstractmethod
    def vjp(self, cotangents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ_o cotangent_o · ∂o/∂A, with A the activation of ``grad_layer`` and o in ``LOGITS`` or a
        requested layer downstream of it. Returns a tensor shaped like A."""


class ModelBackend(ABC):
    """A loaded classifier behind one small interface."""

    info: ModelInfo

    @abstractmethod
    def forward(self, x: torch.Tensor, layers: Sequence[str] = (), grad_layer: str | None = None) -> Forward:
        """Run ``x`` (N×3×H×W, preprocessed); keep the outputs of ``layers``. With ``grad_layer``, the
        returned Forward can take VJPs back to that layer's output; nothing before it is differentiated.
        ``grad_layer=INPUT`` differentiates the whole model, back to ``x``."""

    @abstractmethod
    def logits_with_replaced(self, x: torch.Tensor, layer: str, activation: torch.Tensor) -> torch.Tensor:
        """Logits when ``layer``'s output is replaced by ``activation`` (K rows, all for the single image
        ``x``): what Ablation-CAM needs."""

    @abstractmethod
    def layer_names(self) -> list[str]:
        """Names of all layers whose outputs can be requested, in execution order."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).logits

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")
