"""Training data as tensors: model inputs, labels (−1 = unlabelled) and, for distillation, teacher logits."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdx_engine.data.images import stacked_inputs
from kdx_engine.models.preprocessing import Preprocessing

UNLABELLED = -1


@dataclass(frozen=True)
class Batch:
    """One minibatch: inputs N×3×S×S, labels N (−1 where unlabelled), teacher logits N×K or None."""

    inputs: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class TrainingData:
    """A training set held in memory; ``batch(indices)`` takes rows of every tensor."""

    inputs: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: torch.Tensor) -> Batch:
        teacher = None if self.teacher_logits is None else self.teacher_logits[indices]
        return Batch(self.inputs[indices], self.labels[indices], teacher)

    def with_teacher(self, teacher_logits: torch.Tensor) -> "TrainingData":
        return TrainingData(self.inputs, self.labels, teacher_logits)

    @staticmethod
    def concatenate(parts: list["TrainingData"]) -> "TrainingData":
        teachers = [p.teacher_logits for p in parts]
        if any(t is None for t in teachers) and not all(t is None for t in teachers):
            raise ValueError("either every part or none has teacher logits")
        return TrainingData(torch.cat([p.inputs for p in parts]), torch.cat([p.labels for p in parts]),
                            None if teachers[0] is None else torch.cat(teachers))


def model_inputs(images: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """N×H×W×3 uint8 images as normalised N×3×H×W inputs, the same numbers ``to_batch`` gives for
    images already at the model's input size."""
    size = preprocessing.input_size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected N×{size}×{size}×3 uint8 images, got {images.dtype} {images.shape}")
    return stacked_inputs(images, preprocessing)


def training_data(images: np.ndarray, labels: np.ndarray | None,
                  preprocessing: Preprocessing) -> TrainingData:
    """Images with their labels (None: an unlabelled transfer set)."""
    n = images.shape[0]
    label_tensor = (torch.full((n,), UNLABELLED, dtype=torch.int64) if labels is None
                    else torch.as_tensor(np.asarray(labels), dtype=torch.int64))
    return TrainingData(model_inputs(images, preprocessing), label_tensor)
