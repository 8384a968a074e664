"""CIFAR ResNets of the KD zoo (resnet8 ... resnet110, resnet8x4, resnet32x4).

Parameter names and shapes are those of RepDistiller ``models/resnet.py`` and mdistiller
``mdistiller/models/cifar/resnet.py`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
``fc``), so their checkpoints load with ``strict=True``. Unlike those toolkits, every block and stage
returns one tensor (the post-ReLU output; they also return the pre-activation from the last block of
a stage) and the network returns logits only. ReLUs are not in-place, so hooks on any module see
the tensor they were given.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import CIFAR_PRESET
from ..registry import register_architecture
from .initialisation import init_conv_bn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn, plus the (1x1 conv + bn when the shape changes) shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """3x3 stem, three stages of ``(depth - 2) // 6`` basic blocks (strides 1, 2, 2), 8x8 average pool, fc."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet with basic blocks has depth 6n+2, not {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = _stage(widths[0], widths[1], blocks, stride=1)
        self.layer2 = _stage(widths[1], widths[2], blocks, stride=2)
        self.layer3 = _stage(widths[2], widths[3], blocks, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(widths[3], num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


NARROW = (16, 16, 32, 64)
WIDE_X4 = (32, 64, 128, 256)
CIFAR_RESNETS = {
    "resnet8": (8, NARROW),
    "resnet14": (14, NARROW),
    "resnet20": (20, NARROW),
    "resnet32": (32, NARROW),
    "resnet44": (44, NARROW),
    "resnet56": (56, NARROW),
    "resnet110": (110, NARROW),
    "resnet8x4": (8, WIDE_X4),
    "resnet32x4": (32, WIDE_X4),
}


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    preset = dataclasses.replace(CIFAR_PRESET, architecture=name, source="family-preset")

    @register_architecture(name, family="cifar_resnet", preset=preset, default_classes=100)
    def build(num_classes: int) -> nn.Module:
        return CifarResNet(depth, widths, num_classes)


for _name, (_depth, _widths) in CIFAR_RESNETS.items():
    _register(_name, _depth, _widths)
