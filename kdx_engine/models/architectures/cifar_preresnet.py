"""Pre-activation CIFAR ResNets (preresnet20, preresnet56, preresnet110).

The classic pre-activation layout (He et al., "Identity Mappings in Deep Residual Networks") as the CIFAR
classification code of bearpaw writes it and Stanton et al.'s knowledge-distillation code ("Does
Knowledge Distillation Really Work?") uses it: ``conv1``, ``layer1.0.bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0`` (a 1x1 conv, no BN), a final ``bn``, ``fc``. Below depth 44 the blocks are
basic (``(depth - 2) // 6`` per stage); from 44 on they are bottlenecks of expansion 4
(``(depth - 2) // 9`` per stage), as in that code. Blocks return one tensor (the sum, not activated),
the network logits only; no ReLU is in-place.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import CIFAR_PRESET
from ..registry import register_architecture

FAMILY = "cifar_preresnet"
DEPTHS = (20, 56, 110)
BOTTLENECK_FROM_DEPTH = 44


class PreActBasicBlock(nn.Module):
    """bn-relu-conv3x3-bn-relu-conv3x3 plus the shortcut (identity or ``downsample``)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class PreActBottleneck(nn.Module):
    """bn-relu-conv1x1, bn-relu-conv3x3 (stride), bn-relu-conv1x1 to 4x the width, plus the shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class PreResNet(nn.Module):
    """3x3 stem to 16 channels, three pre-activation stages (16, 32, 64 planes; strides 1, 2, 2),
    ``bn``-relu, 8x8 average pool, ``fc``."""

    def __init__(self, depth: int, num_classes: int):
        super().__init__()
        bottleneck = depth >= BOTTLENECK_FROM_DEPTH
        per_block = 9 if bottleneck else 6
        if (depth - 2) % per_block:
            raise ValueError(f"a pre-activation ResNet of depth {depth} must have depth {per_block}n+2")
        block = PreActBottleneck if bottleneck else PreActBasicBlock
        blocks = (depth - 2) // per_block
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.layer1 = self._stage(block, 16, blocks, 1)
        self.layer2 = self._stage(block, 32, blocks, 2)
        self.layer3 = self._stage(block, 64, blocks, 2)
        self.bn = nn.BatchNorm2d(64 * block.expansion)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        if not next(self.parameters()).is_meta:
            for module in self.modules():  # the home code's He initialisation (fan-out normal)
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def _stage(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.in_planes, planes * block.expansion, 1, stride, bias=False))
        layers = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes, 1, None) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.avgpool(F.relu(self.bn(out)))
        return self.fc(torch.flatten(out, 1))


def _register(depth: int) -> None:
    name = f"preresnet{depth}"
    preset = dataclasses.replace(CIFAR_PRESET, architecture=name, source="family-preset")

    @register_architecture(name, family=FAMILY, preset=preset, default_classes=10)
    def build(num_classes: int) -> nn.Module:
        return PreResNet(depth, num_classes)


for _depth in DEPTHS:
    _register(_depth)
