"""CIFAR-10 ResNets with parameter-free "option A" shortcuts (resnet20_option_a ... resnet1202_option_a).

The layout of the widely used CIFAR-10 reference implementation by Yerlan Idelbayev (``resnet.py``:
``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer3.N.bn2``, ``linear``): where a block halves the
resolution and doubles the width, its shortcut takes every second pixel and pads the new channels with
zeros, so it has no parameters (RepDistiller's ``resnet20`` uses a 1x1 conv + BN there and an ``fc``
head; that family is ``cifar_resnet``). Registered with ``_option_a`` so the RepDistiller names stay
theirs. Its training script normalises with the ImageNet mean and std at 32 px, which is the preset.
Blocks and stages return one tensor, the network logits only; no ReLU is in-place.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ..registry import register_architecture

FAMILY = "cifar_resnet_option_a"
DEPTHS = (20, 32, 44, 56, 110, 1202)


class PaddedShortcut(nn.Module):
    """Option A: subsample by 2 and pad the channels on both sides with zeros (no parameters)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class OptionABlock(nn.Module):
    """conv-bn-relu-conv-bn plus the identity (or padded) shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes = stride != 1 or in_planes != planes
        self.shortcut = PaddedShortcut(planes) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class OptionAResNet(nn.Module):
    """3x3 stem to 16 channels, three stages of ``(depth - 2) // 6`` blocks (16, 32, 64 wide), global
    average pool, ``linear``."""

    def __init__(self, depth: int, num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"an option-A CIFAR ResNet has depth 6n+2, not {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _stage(16, 16, blocks, 1)
        self.layer2 = _stage(16, 32, blocks, 2)
        self.layer3 = _stage(32, 64, blocks, 2)
        self.linear = nn.Linear(64, num_classes)
        if not next(self.parameters()).is_meta:
            for module in self.modules():  # the home code's initialisation: Kaiming-normal (fan-in)
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.shape[3])
        return self.linear(torch.flatten(out, 1))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [OptionABlock(in_planes, planes, stride)]
    layers += [OptionABlock(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _register(depth: int) -> None:
    name = f"resnet{depth}_option_a"
    preset = Preprocessing(input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, architecture=name,
                           source="family-preset")

    blocks = 3 * (depth - 2) // 6  # each: two convs and two BatchNorms of 4 tensors; plus stem and linear

    @register_architecture(name, family=FAMILY, preset=preset, default_classes=10, tensor_count=5 + 10 * blocks + 2)
    def build(num_classes: int) -> nn.Module:
        return OptionAResNet(depth, num_classes)


for _depth in DEPTHS:
    _register(_depth)
