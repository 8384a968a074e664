"""Label smoothing: cross-entropy against (1 − ε)·one-hot + ε/K, the KDExplainer comparison arm."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .cross_entropy import labelled_cross_entropy
from .tensors import Batch


@dataclass(frozen=True)
class LabelSmoothing:
    """Loss = CE with smoothed targets, ε = ``epsilon`` (METHODS §8: 0.1)."""

    epsilon: float = 0.1
    name = "label_smoothing"

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return labelled_cross_entropy(model(batch.inputs), batch.labels, label_smoothing=self.epsilon)
