"""CIFAR VGGs with batch norm of the KD zoo (vgg8, vgg11, vgg13, vgg16, vgg19).

Parameter names and shapes are those of RepDistiller ``models/vgg.py`` and mdistiller
``mdistiller/models/cifar/vgg.py`` (``block0..block4`` as ``conv, bn, relu, conv, bn, ...`` without
the stage's last ReLU, ``classifier``), in their ``_bn`` variants, which is what both toolkits train
under the names ``vgg8`` ... ``vgg19``. Registry names: ``vgg8`` stays ``vgg8``; ``vgg11``, ``vgg13``,
``vgg16`` and ``vgg19`` are registered as ``cifar_vgg11`` ... ``cifar_vgg19`` because torchvision's
ImageNet VGGs hold the plain names. Stages return one (pre-ReLU) tensor, the network logits only.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import CIFAR_PRESET
from ..registry import register_architecture

Stages = tuple[tuple[int, ...], ...]


class CifarVGG(nn.Module):
    """Five conv stages with max-pools between them, global average pool, one linear classifier.

    As in the toolkits, ``pool3`` only runs on 64x64 inputs, so a 32x32 image reaches ``block4`` at 4x4.
    """

    def __init__(self, stages: Stages, num_classes: int):
        super().__init__()
        in_channels = 3
        for index, widths in enumerate(stages):
            setattr(self, f"block{index}", _stage(in_channels, widths))
            in_channels = widths[-1]
        for index in range(4):
            setattr(self, f"pool{index}", nn.MaxPool2d(kernel_size=2, stride=2))
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        x = self.pool0(F.relu(self.block0(x)))
        x = self.pool1(F.relu(self.block1(x)))
        x = self.pool2(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if height == 64:
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        return self.classifier(torch.flatten(self.pool4(x), 1))


def _stage(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers[:-1])


def _init_weights(model: nn.Module) -> None:
    if next(model.parameters()).is_meta:
        return  # a shapes-only build (fingerprinting): meta tensors hold no values to initialise
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


CIFAR_VGGS: dict[str, Stages] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "cifar_vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "cifar_vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "cifar_vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "cifar_vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def _register(name: str, stages: Stages) -> None:
    preset = dataclasses.replace(CIFAR_PRESET, architecture=name, source="family-preset")

    @register_architecture(name, family="cifar_vgg", preset=preset, default_classes=100)
    def build(num_classes: int) -> nn.Module:
        return CifarVGG(stages, num_classes)


for _name, _stages in CIFAR_VGGS.items():
    _register(_name, _stages)
