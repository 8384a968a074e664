"""MobileNetV2 for Tiny-ImageNet as mdistiller trains it (registered as ``mobilenetv2_tinyimagenet``).

mdistiller's ``mdistiller/models/cifar/mv2_tinyimagenet.py``: ``pre`` (a 1x1 conv with bias and padding
1, BN, ReLU6: 64 px become 66), ``stage1`` … ``stage7`` of linear bottlenecks (``residual.0`` … ``.7``,
convolutions with bias), ``conv1`` (1x1 to 1280, BN, ReLU6), global average pool, and ``conv2``, a 1x1
convolution with bias as the classifier. Its ``forward`` returns ``(logits, feats)``; this one returns the
logits. Preset: Tiny-ImageNet's mean and std at 64 px. No ReLU6 is in-place.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register_architecture
from .presets import TINY_IMAGENET_PRESET, named

NAME = "mobilenetv2_tinyimagenet"
FAMILY = "mdistiller_tinyimagenet"
# (repeats, input channels, output channels, first stride, expansion) of stage2 … stage6
STAGES = ((2, 16, 24, 2, 6), (3, 24, 32, 2, 6), (4, 32, 64, 2, 6), (3, 64, 96, 1, 6), (3, 96, 160, 1, 6))


class LinearBottleNeck(nn.Module):
    """1x1 expansion, 3x3 depthwise (stride), 1x1 linear projection, all in ``residual``; the identity is
    added when the stride is 1 and the width kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, out_channels, 1), nn.BatchNorm2d(out_channels),
        )
        self.adds = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        return out + x if self.adds else out


class TinyImageNetMobileNetV2(nn.Module):
    """``pre``, seven stages, ``conv1`` to 1280, global average pool, ``conv2`` (1x1) to the classes."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32), nn.ReLU6())
        self.stage1 = LinearBottleNeck(32, 16, 1, 1)
        for index, (repeats, in_channels, out_channels, stride, expansion) in enumerate(STAGES, start=2):
            blocks = [LinearBottleNeck(in_channels, out_channels, stride, expansion)]
            blocks += [LinearBottleNeck(out_channels, out_channels, 1, expansion) for _ in range(repeats - 1)]
            setattr(self, f"stage{index}", nn.Sequential(*blocks))
        self.stage7 = LinearBottleNeck(160, 320, 1, 6)
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6())
        self.conv2 = nn.Conv2d(1280, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre(x)
        for index in range(1, 8):
            out = getattr(self, f"stage{index}")(out)
        out = F.adaptive_avg_pool2d(self.conv1(out), 1)
        return torch.flatten(self.conv2(out), 1)


@register_architecture(NAME, family=FAMILY, preset=named(TINY_IMAGENET_PRESET, NAME), default_classes=200)
def mobilenetv2_tinyimagenet(num_classes: int) -> nn.Module:
    return TinyImageNetMobileNetV2(num_classes)
