"""What to explain: a class target per image, chosen by a rule (METHODS.md §5)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

TARGET_RULES = ("predicted", "true", "class")


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


@dataclass(frozen=True)
class TargetRule:
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


def target_cotangent(logits: torch.Tensor, targets: Sequence[ClassTarget]) -> torch.Tensor:
    """∂(Σ_i target_i(logits_i))/∂logits: the vector that starts the backward pass."""
    if len(targets) != logits.shape[0]:
        raise ValueError(f"{len(targets)} targets for {logits.shape[0]} images")
    leaf = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        score = sum(target(row) for target, row in zip(targets, leaf))
        (cotangent,) = torch.autograd.grad(score, leaf)
    return cotangent
