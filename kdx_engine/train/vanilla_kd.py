"""Vanilla knowledge distillation (Hinton et al.): ``r·CE + a·τ²·KL(T‖S)`` at temperature τ.

Unlabelled rows (a transfer set) contribute to the KL term only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .cross_entropy import labelled_cross_entropy
from .tensors import Batch


def distillation_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            tau: float) -> torch.Tensor:
    """τ² · KL(softmax(t/τ) ‖ softmax(s/τ)), averaged over the batch."""
    log_student = F.log_softmax(student_logits / tau, dim=1)
    log_teacher = F.log_softmax(teacher_logits / tau, dim=1)
    return tau * tau * F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


def vanilla_kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
                    r: float = 0.1, a: float = 0.9, tau: float = 4.0) -> torch.Tensor:
    """r · CE over labelled rows + a · τ² · KL(T‖S) over all rows."""
    return (r * labelled_cross_entropy(student_logits, labels)
            + a * distillation_divergence(student_logits, teacher_logits, tau))


@dataclass(frozen=True)
class VanillaKD:
    """Loss = r·CE + a·τ²·KL(T‖S); defaults r = 0.1, a = 0.9, τ = 4 (METHODS §7–§8)."""

    r: float = 0.1
    a: float = 0.9
    tau: float = 4.0
    name = "vanilla_kd"

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if batch.teacher_logits is None:
            raise ValueError("vanilla KD needs teacher logits in the training data")
        return vanilla_kd_loss(model(batch.inputs), batch.labels, batch.teacher_logits,
                               self.r, self.a, self.tau)
