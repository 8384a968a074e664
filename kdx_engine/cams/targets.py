"""What to explain (METHODS.md §5): a target object that says where the backward pass starts.

A target's ``seed(forward)`` returns the cotangents at outputs downstream of the gradient layer: a class
target (``ClassTargets``, or a ``TargetRule`` resolved from the same pass's logits) seeds the logits
with ∂(Σ_i logit_i[k_i])/∂logits; UniCAM's score target (``kdx_engine.unicam.UniCamTarget``) seeds its
feature layer with ∂L/∂features. The CAM pipeline (``cams/base.py``) takes it from there.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from ..models.backend import LOGITS

TARGET_RULES = ("predicted", "true", "class")
UNLABELLED_RULE = "predicted (no label)"  # what ``true`` becomes for an image without a label


@dataclass(frozen=True)
class ClassTarget:
    """The raw logit of one class (pytorch-grad-cam's ``ClassifierOutputTarget``)."""

    index: int

    def __call__(self, logits_row: torch.Tensor) -> torch.Tensor:
        return logits_row[self.index]


def resolve_targets(
    rule: str, logits: torch.Tensor, labels: Sequence[int | None] | None = None, class_index: int | None = None
) -> list[ClassTarget]:
    """One target per image: the model's ``predicted`` class, the ``true`` label (falling back to the
    prediction where an image has none), or one chosen ``class`` for all images."""
    predicted = logits.argmax(dim=1).tolist()
    if rule == "predicted":
        return [ClassTarget(k) for k in predicted]
    if rule == "true":
        if labels is None:
            raise ValueError("target rule 'true' needs the images' labels")
        return [ClassTarget(k if k is not None else p) for k, p in zip(labels, predicted)]
    if rule == "class":
        if class_index is None or not 0 <= class_index < logits.shape[1]:
            raise ValueError(f"target class {class_index} is not in 0..{logits.shape[1] - 1}")
        return [ClassTarget(class_index)] * logits.shape[0]
    raise ValueError(f"unknown target rule {rule!r}; use one of {', '.join(TARGET_RULES)}")


@dataclass(frozen=True, eq=False)
class GradientSeed:
    """Where one backward pass starts, for a batch: ``cotangents`` (output name → tensor shaped like that
    output; ``LOGITS`` or a layer the forward kept), the target recorded per image and the rule that
    chose it, the class targets that gradient-free methods score themselves (empty for other targets),
    the target's own reading of a blank map (``blank_note(raw, grads)`` per image; None: the CAM's) and
    what the explanation's ``details`` should record."""

    cotangents: Mapping[str, torch.Tensor]
    indices: tuple[int, ...]
    rule: str
    class_targets: tuple[ClassTarget, ...] = ()
    blank_note: Callable[[torch.Tensor, torch.Tensor | None], str | None] | None = None
    details: Mapping = field(default_factory=dict)


class CamTarget(ABC):
    """What to explain for a batch: a score of outputs downstream of the gradient layer."""

    reads_logits = True  # the logits choose or make the score (they are checked to be finite first)
    layers: tuple[str, ...] = ()  # outputs besides the logits that the seed reads (the forward keeps them)

    @abstractmethod
    def seed(self, forward) -> GradientSeed:
        """The cotangents that start the backward pass of ``forward`` (one pass, no state kept)."""


@dataclass(frozen=True)
class ClassTargets(CamTarget):
    """One class target per image (pytorch-grad-cam's list of ``ClassifierOutputTarget``)."""

    targets: tuple[ClassTarget, ...]
    rule: str = "given"

    def seed(self, forward) -> GradientSeed:
        targets = tuple(self.targets)
        return GradientSeed({LOGITS: target_cotangent(forward.logits, targets)}, tuple(t.index for t in targets),
                            self.rule, class_targets=targets)


@dataclass(frozen=True)
class TargetRule(CamTarget):
    """A rule for choosing targets, resolved from the logits of the pass that computes the maps (so
    choosing a target costs no forward of its own)."""

    rule: str = "predicted"
    labels: tuple[int | None, ...] | None = None
    class_index: int | None = None

    def resolve(self, logits: torch.Tensor) -> list[ClassTarget]:
        class_index = self.class_index
        if self.rule == "class" and class_index is not None and class_index >= logits.shape[1]:
            raise ValueError(f"target class {class_index} is not in 0..{logits.shape[1] - 1}")
        return resolve_targets(self.rule, logits, labels=self.labels, class_index=class_index)

    def seed(self, forward) -> GradientSeed:
        return ClassTargets(tuple(self.resolve(forward.logits)), self.recorded_rule).seed(forward)

    @property
    def recorded_rule(self) -> str:
        """The rule as the explanation records it: ``true`` falls back to the prediction for images
        without a label, and says so."""
        if self.rule != "true" or self.labels is None or all(label is not None for label in self.labels):
            return self.rule
        if all(label is None for label in self.labels):
            return UNLABELLED_RULE
        return "true (predicted where unlabelled)"


@dataclass(frozen=True)
class HeadTarget(CamTarget):
    """A class score of one classifier head of a model with several, seeded at that head's own output (a
    distilled DeiT's ``head`` reads the class token, ``head_dist`` the distillation token; its logits
    are their mean). ``rule``: the head's own ``predicted`` class, or one ``class`` for all images."""

    head: str
    rule: str = "predicted"
    class_index: int | None = None

    reads_logits = False  # the head's own scores are checked instead

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.head,)

    def seed(self, forward) -> GradientSeed:
        scores = forward.activations[self.head]
        if not torch.isfinite(scores).all():
            raise ValueError(f"head {self.head!r} gave NaN or inf scores; no class can be chosen from them")
        targets = tuple(resolve_targets(self.rule, scores, class_index=self.class_index))
        return GradientSeed({self.head: target_cotangent(scores, targets)}, tuple(t.index for t in targets),
                            f"{self.rule} ({self.head})", class_targets=(),
                            details={"head": self.head})


def as_target(targets: CamTarget | Sequence[ClassTarget], rule: str | None = None) -> CamTarget:
    """A target object for ``targets``: a list of class targets (recorded as ``rule``, default "given"),
    or a ``TargetRule`` or other ``CamTarget`` (recorded as ``rule`` where one is given)."""
    if not isinstance(targets, CamTarget):
        return ClassTargets(tuple(targets), rule or "given")
    return _RecordedAs(targets, rule) if rule else targets


@dataclass(frozen=True)
class _RecordedAs(CamTarget):
    """A target whose rule is recorded under another name."""

    target: CamTarget
    rule: str

    @property
    def reads_logits(self) -> bool:
        return self.target.reads_logits

    @property
    def layers(self) -> tuple[str, ...]:
        return self.target.layers

    def seed(self, forward) -> GradientSeed:
        return dataclasses.replace(self.target.seed(forward), rule=self.rule)


def target_cotangent(logits: torch.Tensor, targets: Sequence[ClassTarget]) -> torch.Tensor:
    """∂(Σ_i target_i(logits_i))/∂logits: the vector that starts the backward pass."""
    if len(targets) != logits.shape[0]:
        raise ValueError(f"{len(targets)} targets for {logits.shape[0]} images")
    leaf = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        score = sum(target(row) for target, row in zip(targets, leaf))
        (cotangent,) = torch.autograd.grad(score, leaf)
    return cotangent
