"""Wide ResNets of torchdistill for CIFAR (wide_resnet40_4, wide_resnet28_10, wide_resnet16_8).

torchdistill's layout (``models/classification/wide_resnet.py``, after Zagoruyko's WRN): ``conv1``,
``layer1.0.bn1``, ``layer1.0.conv1`` (carrying the stride), ``layer1.0.shortcut.0`` (a 1x1 conv on the
block's input, not on its activation), a final ``bn1``, ``fc``. It differs from RepDistiller's
``wrn_40_2`` (``block1.layer.0``, ``convShortcut``), registered in ``cifar_wrn``. Dropout (p = 0.3 in
training) is kept as a module and does nothing at evaluation. torchdistill trains on CIFAR-10 by
default: that is the preset. Blocks return one tensor, the network logits only.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register_architecture
from .initialisation import init_conv_bn
from .presets import CIFAR10_PRESET, named

FAMILY = "torchdistill_wrn"
VARIANTS = {"wide_resnet40_4": (40, 4), "wide_resnet28_10": (28, 10), "wide_resnet16_8": (16, 8)}
DROPOUT = 0.3


class WideBasicBlock(nn.Module):
    """bn-relu-conv3x3 (stride)-dropout-bn-relu-conv3x3 plus the shortcut of the raw input."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.dropout = nn.Dropout(DROPOUT)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class TorchdistillWideResNet(nn.Module):
    """3x3 stem to 16 channels, three stages of ``(depth - 4) // 6`` wide blocks (16k, 32k, 64k; strides
    1, 2, 2), ``bn1``-relu, global average pool, ``fc``."""

    def __init__(self, depth: int, k: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a Wide ResNet has depth 6n+4, not {depth}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * k, 32 * k, 64 * k)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.layer1 = _stage(widths[0], widths[1], blocks, 1)
        self.layer2 = _stage(widths[1], widths[2], blocks, 2)
        self.layer3 = _stage(widths[2], widths[3], blocks, 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.avgpool(F.relu(self.bn1(out)))
        return self.fc(torch.flatten(out, 1))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [WideBasicBlock(in_planes, planes, stride)]
    layers += [WideBasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _register(name: str, depth: int, k: int) -> None:
    @register_architecture(name, family=FAMILY, preset=named(CIFAR10_PRESET, name), default_classes=10)
    def build(num_classes: int) -> nn.Module:
        return TorchdistillWideResNet(depth, k, num_classes)


for _name, (_depth, _k) in VARIANTS.items():
    _register(_name, _depth, _k)
