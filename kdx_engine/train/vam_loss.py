"""The VAM student's loss (METHODS §7): vanilla KD plus γ × the attention's normalised row entropy."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdx_engine.vam import vam_entropy_penalty

from .tensors import Batch
from .vanilla_kd import VanillaKD


@dataclass(frozen=True)
class VAMLoss:
    """Loss = r·CE + a·τ²·KL(T‖S) + γ · mean_layers mean_rows H(A_row)/log G_in; γ = 0.1."""

    kd: VanillaKD = field(default_factory=VanillaKD)
    gamma: float = 0.1
    name = "vam"

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.kd(model, batch) + self.gamma * vam_entropy_penalty(model)
