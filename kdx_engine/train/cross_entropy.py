"""Cross-entropy from labels alone: how the Base student and the no-KD arms learn."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .tensors import UNLABELLED, Batch


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled rows (label ≠ −1); zero when the batch has none."""
    labelled = labels != UNLABELLED
    if not labelled.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], labels[labelled], label_smoothing=label_smoothing)


@dataclass(frozen=True)
class CrossEntropy:
    """Loss = CE(labels)."""

    name = "cross_entropy"

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return labelled_cross_entropy(model(batch.inputs), batch.labels)
