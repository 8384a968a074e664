"""CIFAR MobileNetV2 of the KD zoo, registered as ``MobileNetV2``.

It is RepDistiller's ``mobile_half`` (``models/mobilenetv2.py``: expansion 6, width 0.5), which
mdistiller (``mdistiller/models/cifar/mobilenetv2.py``) trains under the name ``MobileNetV2``. The
name differs from torchvision's ImageNet ``mobilenet_v2``, which is a different network. Parameter
names and shapes are the toolkits' (``conv1.0``, ``blocks.3.1.conv.4``, ``conv2.0``,
``classifier.0``); each ``blocks.k`` stage returns one tensor and the network returns logits only.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..preprocessing import CIFAR_PRESET
from ..registry import register_architecture
from .initialisation import init_conv_bn

# (expansion, output channels before width scaling, blocks, first stride); expansion None means T.
STAGES = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
          (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection (``conv``); residual when shapes allow.

    The expansion conv is kept even at expansion 1, as in the toolkits.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class CifarMobileNetV2(nn.Module):
    """Stride-2 stem, seven inverted-residual stages, 1x1 conv to 1280, average pool, linear.

    The pool is a fixed 2x2 window (ceil mode), sized for 32x32 inputs as in the toolkits.
    """

    def __init__(self, expansion: int, width_mult: float, num_classes: int):
        super().__init__()
        channels = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(3, channels, 3, 2)
        self.blocks = nn.ModuleList()
        for stage_expansion, width, count, stride in STAGES:
            out_channels = int(width * width_mult)
            t = expansion if stage_expansion is None else stage_expansion
            layers = []
            for block_stride in [stride] + [1] * (count - 1):
                layers.append(InvertedResidual(channels, out_channels, block_stride, t))
                channels = out_channels
            self.blocks.append(nn.Sequential(*layers))
        last_channels = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, last_channels, 1, 1)
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.classifier = nn.Sequential(nn.Linear(last_channels, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        for stage in self.blocks:
            out = stage(out)
        out = self.avgpool(self.conv2(out))
        return self.classifier(torch.flatten(out, 1))


def _init_weights(model: nn.Module) -> None:
    init_conv_bn(model)
    if next(model.parameters()).is_meta:
        return
    for module in model.modules():  # the classifier is the last module, so the RNG order is unchanged
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


_PRESET = dataclasses.replace(CIFAR_PRESET, architecture="MobileNetV2", source="family-preset")


@register_architecture("MobileNetV2", family="cifar_mobilenetv2", preset=_PRESET, default_classes=100)
def mobilenetv2_half(num_classes: int) -> nn.Module:
    return CifarMobileNetV2(expansion=6, width_mult=0.5, num_classes=num_classes)
