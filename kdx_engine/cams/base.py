"""The CAM pipeline (METHODS.md §5): one base class; each method overrides the step it changes.

capture the layer's activations A → take gradients of the targets from that layer onwards only →
combine A (and gradients) into a low-resolution map → ReLU → bilinear resize to the input.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.backend import LOGITS, ModelBackend
from ..models.layers import default_target_layer, probe_layers
from ..models.loading import check_finite_logits
from .explanation import Explanation
from .targets import ClassTarget, TargetRule, target_cotangent


class BaseCAM(ABC):
    """Run a CAM method of ``backend`` at ``layer`` (default: the automatic target layer)."""

    name = "base"
    uses_gradients = True

    def __init__(self, backend: ModelBackend, layer: str | None = None, batch_size: int = 32):
        self.backend = backend
        self.layer = layer or default_target_layer(probe_layers(backend))
        self.batch_size = batch_size

    def __call__(self, x: torch.Tensor, targets: Sequence[ClassTarget] | TargetRule,
                 target_rule: str | None = None) -> Explanation:
        """Maps of ``x`` for ``targets``: one target per image, or a rule resolved from the logits of the
        same forward pass that computes the map."""
        return self.from_forward(x, self.run_forward(x), targets, target_rule)

    def run_forward(self, x: torch.Tensor, layers: Sequence[str] = ()):
        """The one forward pass a map needs (with gradients from the target layer on, for gradient
        methods); ``layers`` adds activations for other uses of the same pass (e.g. UniCAM)."""
        if self.uses_gradients:
            return self.backend.forward(x, layers, grad_layer=self.layer)
        return self.backend.forward(x, [self.layer, *layers])

    def from_forward(self, x: torch.Tensor, forward, targets: Sequence[ClassTarget] | TargetRule,
                     target_rule: str | None = None) -> Explanation:
        """The maps from a forward pass made by ``run_forward``."""
        check_finite_logits(forward.logits, self.backend)
        if isinstance(targets, TargetRule):
            target_rule = target_rule or targets.rule
            targets = targets.resolve(forward.logits)
        activations = forward.activations[self.layer]
        _check_spatial(activations, self.layer)
        grads = forward.vjp({LOGITS: target_cotangent(forward.logits, targets)}) if self.uses_gradients else None
        raw = self.cam_image(x, activations, grads, targets)
        low_res = torch.relu(raw)
        maps = F.interpolate(low_res[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        notes = tuple(_map_note(r, g) for r, g in zip(raw, grads if grads is not None else [None] * len(raw)))
        return Explanation(
            method=self.name, layer=self.layer, targets=tuple(t.index for t in targets),
            target_rule=target_rule or "given", low_res=low_res, maps=maps, logits=forward.logits, notes=notes,
        )

    @abstractmethod
    def cam_image(self, x, activations, grads, targets) -> torch.Tensor:
        """N×h×w map before the ReLU."""


class WeightedCAM(BaseCAM):
    """A CAM that is a weighted sum of the activation channels; methods define the weights."""

    def cam_image(self, x, activations, grads, targets) -> torch.Tensor:
        weights = self.channel_weights(x, activations, grads, targets)
        return (weights[:, :, None, None] * activations).sum(dim=1)

    @abstractmethod
    def channel_weights(self, x, activations, grads, targets) -> torch.Tensor:
        """N×C channel weights."""


def _check_spatial(activations: torch.Tensor, layer: str) -> None:
    if activations.dim() != 4:
        raise ValueError(f"layer {layer!r} has output shape {tuple(activations.shape[1:])}; a CAM needs C×H×W")


def _map_note(raw: torch.Tensor, grads: torch.Tensor | None) -> str | None:
    """Why a map is blank or broken, or None when it is fine."""
    if not torch.isfinite(raw).all():
        return "map has non-finite values (NaN or inf in activations or gradients)"
    if grads is not None and not grads.any():
        return "all-zero map: the gradients at this layer are zero (layer off the gradient path?)"
    if not (raw > 0).any():
        return "all-zero map: the weighted activations are negative everywhere (ReLU removed them)"
    return None
