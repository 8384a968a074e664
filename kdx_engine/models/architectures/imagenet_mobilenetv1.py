"""MobileNetV1 for ImageNet as mdistiller trains it (registered as ``MobileNetV1``).

mdistiller's ``mdistiller/models/imagenet/mobilenetv1.py``: ``model.0`` is conv-bn-relu (3 → 32,
stride 2), ``model.1`` … ``model.13`` are depthwise-separable blocks (``model.K.0`` depthwise conv,
``model.K.1`` BN, ``model.K.3`` pointwise conv, ``model.K.4`` BN), ``model.14`` a 7x7 average pool, ``fc``
1024 → classes. The pool is fixed, so the input is 224 px (the ImageNet preset). Blocks return one
tensor, the network logits only; no ReLU is in-place.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register_architecture
from .presets import imagenet

NAME = "MobileNetV1"
FAMILY = "mdistiller_imagenet"
# (input channels, output channels, stride) of the depthwise-separable blocks model.1 … model.13
SEPARABLE = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
             *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1))


def _conv_bn(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def _separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(),
    )


class MobileNetV1(nn.Module):
    """Stem, 13 depthwise-separable blocks, 7x7 average pool (all in ``model``), ``fc``."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.model = nn.Sequential(_conv_bn(3, 32, 2), *(_separable(*spec) for spec in SEPARABLE), nn.AvgPool2d(7))
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.model(x), 1))


@register_architecture(NAME, family=FAMILY, preset=imagenet(NAME), default_classes=1000)
def mobilenet_v1(num_classes: int) -> nn.Module:
    return MobileNetV1(num_classes)
