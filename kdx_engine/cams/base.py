"""The CAM pipeline (METHODS.md §5): one base class; each method overrides the step it changes.

capture the layer's activations A → see them as an image (``reshape_transform``) → seed the backward
pass with the target's cotangents (``CamTarget.seed``: a class logit, or UniCAM's score at its feature
layer) and take gradients from the layer onwards only → combine A (and gradients) into a
low-resolution map → ReLU → bilinear resize to the input → say why a map is blank.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.layers import default_target_layer, probe_layers
from ..models.loading import check_finite_logits
from ..models.backend import ModelBackend
from .explanation import Explanation
from .reshape import ReshapeTransform, SpatialLayer, transform_for
from .targets import CamTarget, ClassTarget, TargetRule, as_target


class BaseCAM(ABC):
    """Run a CAM method of ``backend`` at ``layer`` (default: the automatic target layer), seeing the
    layer's output as an image through ``reshape_transform`` (default: the one its probed layout needs:
    N×C×H×W as it is, tokens on their patch grid, channels-last stages permuted)."""

    name = "base"
    uses_gradients = True

    def __init__(self, backend: ModelBackend, layer: str | None = None, batch_size: int = 32,
                 reshape_transform: ReshapeTransform | None = None):
        self.backend = backend
        self.layer = layer or default_target_layer(probe_layers(backend))
        self.batch_size = batch_size
        self.reshape_transform = reshape_transform  # None: the layer's own layout (``transform_for``)

    def __call__(self, x: torch.Tensor, targets: Sequence[ClassTarget] | CamTarget,
                 target_rule: str | None = None) -> Explanation:
        """Maps of ``x`` for ``targets``: one class target per image, a rule resolved from the logits of
        the same forward pass that computes the map, or another target object."""
        target = as_target(targets, target_rule)
        return self.explain_forward(self.run_forward(x, target.layers), target, tuple(x.shape[-2:]), x)

    def run_forward(self, x: torch.Tensor, layers: Sequence[str] = ()):
        """The one forward pass a map needs (with gradients from the target layer on, for gradient
        methods); ``layers`` adds activations for other uses of the same pass (e.g. UniCAM)."""
        if self.uses_gradients:
            return self.backend.forward(x, layers, grad_layer=self.layer)
        return self.backend.forward(x, [self.layer, *layers])

    def from_forward(self, x: torch.Tensor, forward, targets: Sequence[ClassTarget] | CamTarget,
                     target_rule: str | None = None) -> Explanation:
        """The maps from a forward pass made by ``run_forward``, at ``x``'s size."""
        return self.explain_forward(forward, as_target(targets, target_rule), tuple(x.shape[-2:]), x)

    def explain_forward(self, forward, target: CamTarget, size: tuple[int, int],
                        x: torch.Tensor | None = None) -> Explanation:
        """The whole pipeline on one forward pass: maps of ``target`` resized to ``size``. ``x`` (the
        inputs) is needed by the gradient-free methods only, which score class targets themselves."""
        if target.reads_logits:
            check_finite_logits(forward.logits, self.backend)
        seed = target.seed(forward)
        transform = self.transform_for(forward.activations[self.layer])
        activations = transform(forward.activations[self.layer], self.layer)
        if not self.uses_gradients and (x is None or not seed.class_targets):
            raise ValueError(f"{self.name} scores class targets on the inputs; it cannot explain this target")
        grads = transform(forward.vjp(seed.cotangents), self.layer) if self.uses_gradients else None
        raw = self.cam_image(x, activations, grads, seed.class_targets)
        low_res = torch.relu(raw)
        maps = F.interpolate(low_res[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        if seed.blank_note is None:
            notes = _map_notes(raw, grads)
        else:
            notes = tuple(seed.blank_note(r, g) for r, g in zip(raw, grads if grads is not None else [None] * len(raw)))
        return Explanation(
            method=self.name, layer=self.layer, targets=seed.indices, target_rule=seed.rule,
            low_res=low_res, maps=maps, logits=forward.logits, notes=notes, details=dict(seed.details),
        )

    def transform_for(self, activation: torch.Tensor) -> ReshapeTransform:
        """The transform given, else the one this layer's layout needs: a square N×C×H×W output as it is
        (no probe needed), anything else from the shape probe (tokens, channels-last stages)."""
        if self.reshape_transform is not None:
            return self.reshape_transform
        if activation.dim() == 4 and activation.shape[2] == activation.shape[3]:
            return SpatialLayer()
        return layer_transform(self.backend, self.layer)

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


def layer_transform(backend: ModelBackend, layer: str) -> ReshapeTransform:
    """The reshape transform ``layer`` of ``backend`` needs, from the shape probe (``transform_for``)."""
    return transform_for(next((info for info in probe_layers(backend) if info.name == layer), None))


def _map_notes(raw: torch.Tensor, grads: torch.Tensor | None) -> tuple[str | None, ...]:
    """Per map of the batch, why it is blank or broken, or None when it is fine."""
    count = raw.shape[0]
    broken = ~torch.isfinite(raw.reshape(count, -1)).all(dim=1)
    no_gradient = ~grads.reshape(count, -1).any(dim=1) if grads is not None else torch.zeros(count, dtype=torch.bool)
    negative = ~(raw.reshape(count, -1) > 0).any(dim=1)
    notes = []
    for is_broken, has_no_gradient, is_negative in zip(broken.tolist(), no_gradient.tolist(), negative.tolist()):
        if is_broken:
            notes.append("map has non-finite values (NaN or inf in activations or gradients)")
        elif has_no_gradient:
            notes.append("all-zero map: the gradients at this layer are zero (layer off the gradient path?)")
        elif is_negative:
            notes.append("all-zero map: the weighted activations are negative everywhere (ReLU removed them)")
        else:
            notes.append(None)
    return tuple(notes)
