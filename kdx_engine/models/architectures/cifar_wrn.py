"""CIFAR Wide ResNets of the KD zoo (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2).

Parameter names and shapes are those of RepDistiller ``models/wrn.py`` and mdistiller
``mdistiller/models/cifar/wrn.py`` (``conv1``, ``block1.layer.0.bn1``, ``block1.layer.0.convShortcut``,
``bn1``, ``fc``), so their checkpoints load with ``strict=True``. Stages ``block1..block3`` return
one tensor and the network returns logits only. Dropout is left out: every registered variant uses
a drop rate of 0.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import CIFAR_PRESET
from ..registry import register_architecture
from .initialisation import init_conv_bn


class PreActBlock(nn.Module):
    """bn-relu-conv-bn-relu-conv with an identity shortcut, or a 1x1 conv shortcut on the
    activated input when the width or resolution changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        shortcut = x if self.equal_in_out else self.convShortcut(activated)
        return shortcut + out


class NetworkBlock(nn.Module):
    """One stage: ``layer`` is the sequence of blocks (the toolkits' name, kept for the state_dict)."""

    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        layers = [PreActBlock(in_planes, out_planes, stride)]
        layers += [PreActBlock(out_planes, out_planes, 1) for _ in range(blocks - 1)]
        self.layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """3x3 stem, three pre-activation stages (strides 1, 2, 2), bn-relu, 8x8 average pool, fc."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a Wide ResNet has depth 6n+4, not {depth}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(blocks, widths[0], widths[1], stride=1)
        self.block2 = NetworkBlock(blocks, widths[1], widths[2], stride=2)
        self.block3 = NetworkBlock(blocks, widths[2], widths[3], stride=2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(widths[3], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.avg_pool2d(self.relu(self.bn1(out)), 8)
        return self.fc(torch.flatten(out, 1))


def _init_weights(model: nn.Module) -> None:
    init_conv_bn(model)
    if next(model.parameters()).is_meta:
        return
    for module in model.modules():  # the classifier is the last module, so the RNG order is unchanged
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


WIDE_RESNETS = {"wrn_16_1": (16, 1), "wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}


def _register(name: str, depth: int, widen_factor: int) -> None:
    preset = dataclasses.replace(CIFAR_PRESET, architecture=name, source="family-preset")

    @register_architecture(name, family="cifar_wrn", preset=preset, default_classes=100)
    def build(num_classes: int) -> nn.Module:
        return WideResNet(depth, widen_factor, num_classes)


for _name, (_depth, _widen) in WIDE_RESNETS.items():
    _register(_name, _depth, _widen)
