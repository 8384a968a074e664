"""KDExplainer's student (METHODS §8): a hierarchical mixture of experts with input-independent routing.

Level 1's experts all read the image; each expert of a later level reads ``Σ_j A_ij · Block_j(x)``,
a mixture of the previous level's outputs with ``A = softmax(θ/t)`` over parents (θ: children ×
parents). Each class has one head reading a mixture of the last level, and the K head scores are
the K-way logits. After the soft stage, routing can be fixed to hard argmax (a tree with classes at
the leaves); the ``hard_routing`` and ``temperature`` buffers travel with the state_dict, so a
loaded model routes as it was trained.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LEVEL_SIZES = (2, 4, 8)
LEVEL_WIDTHS = (8, 12, 16)


class ExpertBlock(nn.Sequential):
    """One expert: (3×3 conv, BN, ReLU) × 2, then a 2×2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )


class KDExplainerNet(nn.Module):
    """Levels of parallel experts (``level_sizes``, widths ``level_widths``), routing θ per level
    (``routing.0`` … , the last one routes the last level to the K class heads), and the heads."""

    def __init__(self, num_classes: int, level_sizes: tuple[int, ...] = LEVEL_SIZES,
                 level_widths: tuple[int, ...] = LEVEL_WIDTHS):
        super().__init__()
        if len(level_sizes) != len(level_widths) or not level_sizes:
            raise ValueError("level_sizes and level_widths need one entry per level")
        in_widths = (3,) + tuple(level_widths[:-1])
        self.levels = nn.ModuleList(
            nn.ModuleList(ExpertBlock(c_in, c_out) for _ in range(n))
            for n, c_in, c_out in zip(level_sizes, in_widths, level_widths))
        children = tuple(level_sizes[1:]) + (num_classes,)
        self.routing = nn.ParameterList(
            nn.Parameter(torch.zeros(c, p)) for c, p in zip(children, level_sizes))
        self.experts_out = nn.Identity()  # last level's experts side by side: the layer a CAM reads
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_weight = nn.Parameter(torch.zeros(num_classes, level_widths[-1]))
        self.head_bias = nn.Parameter(torch.zeros(num_classes))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("hard_routing", torch.tensor(False))
        _init_weights(self)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(len(level) for level in self.levels)

    def routing_weights(self, index: int) -> torch.Tensor:
        """Children × parents mixing weights of routing ``index``: softmax(θ/t), or one-hot argmax
        once routing is hard."""
        theta = self.routing[index]
        if bool(self.hard_routing):
            return F.one_hot(theta.argmax(dim=1), theta.shape[1]).to(theta.dtype)
        return torch.softmax(theta / self.temperature, dim=1)

    def set_hard_routing(self) -> None:
        """Fix routing to its argmax tree (stage 2) and stop training θ."""
        self.hard_routing.fill_(True)
        for theta in self.routing:
            theta.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [expert(x) for expert in self.levels[0]]
        for index, level in enumerate(self.levels[1:]):
            mixed = torch.einsum("ij,nj...->ni...", self.routing_weights(index), torch.stack(outputs, 1))
            outputs = [expert(mixed[:, i]) for i, expert in enumerate(level)]
        features = self.experts_out(torch.cat(outputs, 1))
        pooled = self.pool(features).flatten(1).reshape(x.shape[0], len(outputs), -1)
        head_inputs = torch.einsum("kj,njc->nkc", self.routing_weights(len(self.routing) - 1), pooled)
        return (head_inputs * self.head_weight).sum(dim=2) + self.head_bias


def _init_weights(model: nn.Module) -> None:
    if model.head_weight.is_meta:
        return  # a shapes-only build (fingerprinting) has no values to initialise
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    nn.init.normal_(model.head_weight, std=0.01)
