"""The bundled demo's small networks (PRODUCT §8): a ResNet in two widths.

They are sized to train on two CPU cores in minutes on the synthetic 48×48 shapes. The ResNet is the
CIFAR ResNet's basic block after a stem that halves the resolution, with global average pooling, so
the last stage's 12×12 map is what a CAM sees. Module names (``stem``, ``stage1``…``stage3``,
``head``) differ from every toolkit family, so their state_dicts are recognised unambiguously. The
demo's VAM Student and KDExplainer register from their own packages (``kdx_engine.vam.demo_arch``,
``kdx_engine.hme.demo_arch``) with ``demo_preset``, so this package never imports a method package.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..preprocessing import Preprocessing
from ..registry import register_architecture
from .cifar_resnet import BasicBlock
from .initialisation import init_conv_bn

DEMO_IMAGE_SIZE = 48
DEMO_CLASSES = 4
DEMO_PRESET = Preprocessing(input_size=DEMO_IMAGE_SIZE, resize=None, mean=(0.5, 0.5, 0.5),
                            std=(0.25, 0.25, 0.25), source="family-preset")
STUDENT_WIDTHS = (16, 32, 48)
TEACHER_WIDTHS = (32, 64, 96)


class DemoResNet(nn.Module):
    """Stem (3×3 conv, BN, ReLU, 2×2 max-pool), one basic block per stage (strides 1, 2, 1), pool, fc."""

    def __init__(self, widths: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.stage1 = nn.Sequential(BasicBlock(widths[0], widths[0], stride=1))
        self.stage2 = nn.Sequential(BasicBlock(widths[0], widths[1], stride=2))
        self.stage3 = nn.Sequential(BasicBlock(widths[1], widths[2], stride=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[2], num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.head(torch.flatten(self.pool(x), 1))


def demo_preset(name: str) -> Preprocessing:
    """The demo preset (48×48, mean 0.5, std 0.25) recorded under architecture ``name``."""
    return dataclasses.replace(DEMO_PRESET, architecture=name)


@register_architecture("demo_resnet_small", family="kdx_demo", preset=demo_preset("demo_resnet_small"),
                       default_classes=DEMO_CLASSES)
def demo_resnet_small(num_classes: int) -> nn.Module:
    """The demo's Student and Base."""
    return DemoResNet(STUDENT_WIDTHS, num_classes)


@register_architecture("demo_resnet_wide", family="kdx_demo", preset=demo_preset("demo_resnet_wide"),
                       default_classes=DEMO_CLASSES)
def demo_resnet_wide(num_classes: int) -> nn.Module:
    """The demo's Teacher: the same depth, twice the width."""
    return DemoResNet(TEACHER_WIDTHS, num_classes)
