"""EfficientNet-Lite0 … Lite4 in the ``_conv_stem`` / ``_blocks`` layout of EfficientNet-PyTorch.

The layout of lukemelas' EfficientNet-PyTorch, which the PyTorch ports of the Lite models keep:
``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` /
``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``. The Lite variants follow TensorFlow's
definition: no squeeze-and-excitation, ReLU6 instead of swish, the stem (32) and head (1280) widths and
the first and last stages' repeats not scaled. Convolutions pad as TensorFlow's "SAME" (computed for the
input, so any size runs); BatchNorm eps is 1e-3. Preprocessing: (pixel - 127) / 128, bicubic resize to
size + 32 and centre crop, as TensorFlow's evaluation. Blocks return one tensor, the network logits only.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import Preprocessing
from ..registry import register_architecture
from .presets import LITE_MEAN, LITE_STD

FAMILY = "efficientnet_lite"
# name: (width coefficient, depth coefficient, input size)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
    "efficientnet_lite3": (1.2, 1.4, 280),
    "efficientnet_lite4": (1.4, 1.8, 300),
}
# (repeats, kernel, stride, expansion, input filters, output filters): EfficientNet-B0's stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, HEAD = 32, 1280
DIVISOR = 8
BN_EPS = 1e-3
CROP_PADDING = 32


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of 8, never below 90% of the scaled value."""
    scaled = filters * width
    rounded = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return int(rounded + DIVISOR if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's "SAME": output size ceil(input / stride), the odd
    pixel of padding at the bottom and right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class LiteBlock(nn.Module):
    """MBConv without squeeze-and-excitation: 1x1 expansion (unless 1), depthwise, 1x1 projection; the
    identity is added when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.expands = expansion != 1
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite(nn.Module):
    """Stem, the seven MBConv stages flattened into ``_blocks``, 1x1 head to 1280, global pool, ``_fc``."""

    def __init__(self, width: float, depth: float, dropout: float, num_classes: int):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks = []
        for index, (repeats, kernel, stride, expansion, in_filters, out_filters) in enumerate(STAGES):
            fixed = index in (0, len(STAGES) - 1)
            count = repeats if fixed else int(math.ceil(depth * repeats))
            in_channels = STEM if index == 0 else round_filters(in_filters, width)
            out_channels = round_filters(out_filters, width)
            for repeat in range(count):
                blocks.append(LiteBlock(in_channels, out_channels, kernel, stride if repeat == 0 else 1, expansion))
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_channels, HEAD, 1)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            out = block(out)
        out = F.relu6(self._bn1(self._conv_head(out)))
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(out), 1)))


def _register(name: str, width: float, depth: float, size: int) -> None:
    preset = Preprocessing(input_size=size, resize=size + CROP_PADDING, mean=LITE_MEAN, std=LITE_STD,
                           interpolation="bicubic", architecture=name, source="family-preset")
    dropout = 0.2 if size < 260 else 0.3

    @register_architecture(name, family=FAMILY, preset=preset, default_classes=1000)
    def build(num_classes: int) -> nn.Module:
        return EfficientNetLite(width, depth, dropout, num_classes)


for _name, (_width, _depth, _size) in VARIANTS.items():
    _register(_name, _width, _depth, _size)
