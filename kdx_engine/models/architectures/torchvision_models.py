"""torchvision ImageNet classifiers, built with random weights (KDX never downloads weights)."""
from __future__ import annotations

import dataclasses
from functools import partial

import torch
import torchvision
from torch import nn
from torchvision.models.regnet import BlockParams, RegNet

from ..preprocessing import IMAGENET_PRESET
from ..registry import register_architecture

TORCHVISION_NAMES = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "wide_resnet50_2", "resnext50_32x4d",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "densenet121",
    "efficientnet_b0", "efficientnet_b1",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "convnext_tiny",
    "regnet_y_400mf",
)


def _regnet_y_400mf(weights: None = None, num_classes: int = 1000) -> nn.Module:
    """torchvision's ``regnet_y_400mf``, with its stage widths computed on the CPU.

    torchvision derives the widths with tensor arithmetic and ``.tolist()``, which fails while the
    registry builds candidates on the meta device; the modules themselves are built on the default device.
    """
    with torch.device("cpu"):
        params = BlockParams.from_init_params(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25)
    return RegNet(params, num_classes=num_classes, norm_layer=partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1))


_SPECIAL_BUILDERS = {"regnet_y_400mf": _regnet_y_400mf}


def _register(name: str) -> None:
    preset = dataclasses.replace(IMAGENET_PRESET, architecture=name, source="family-preset")
    torchvision_builder = _SPECIAL_BUILDERS.get(name) or getattr(torchvision.models, name)

    @register_architecture(name, family="torchvision", preset=preset, default_classes=1000)
    def build(num_classes: int) -> nn.Module:
        return torchvision_builder(weights=None, num_classes=num_classes)


for _name in TORCHVISION_NAMES:
    _register(_name)
