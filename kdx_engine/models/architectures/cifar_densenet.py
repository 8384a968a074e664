"""DenseNet-BC for CIFAR (densenet_bc_k12_depth100), in torchdistill's layout.

torchdistill's ``DenseNet4Cifar`` (``models/classification/densenet.py``) is torchvision's DenseNet with
a 3x3 stride-1 stem and three dense blocks: ``features.conv0``, ``features.denseblock1.denselayer1.norm1``
… ``features.transition1.conv``, ``features.norm5``, ``classifier``. DenseNet-BC with growth rate
k = 12 and depth 100 has 16 bottleneck layers per block and a 2k = 24-channel stem. The dense blocks
and transitions are torchvision's own modules, so the names and shapes are torchvision's. The preset is
CIFAR-10's (torchdistill's default). Blocks return one tensor, the network logits only.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.densenet import _DenseBlock, _Transition

from ..registry import register_architecture
from .presets import CIFAR10_PRESET, named

FAMILY = "cifar_densenet"
VARIANTS = {"densenet_bc_k12_depth100": (12, 100)}
BN_SIZE = 4


class CifarDenseNetBC(nn.Module):
    """3x3 stem, three dense blocks with compressing (θ = 0.5) transitions, ``norm5``-relu, global average
    pool, ``classifier``."""

    def __init__(self, growth_rate: int, depth: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a DenseNet-BC has depth 6n+4, not {depth}")
        layers = (depth - 4) // 6
        features = 2 * growth_rate
        self.features = nn.Sequential(OrderedDict([("conv0", nn.Conv2d(3, features, 3, 1, 1, bias=False))]))
        for index in range(3):
            block = _DenseBlock(num_layers=layers, num_input_features=features, bn_size=BN_SIZE,
                                growth_rate=growth_rate, drop_rate=0.0)
            self.features.add_module(f"denseblock{index + 1}", block)
            features += layers * growth_rate
            if index < 2:
                self.features.add_module(f"transition{index + 1}", _Transition(features, features // 2))
                features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(features))
        self.classifier = nn.Linear(features, num_classes)
        if not next(self.parameters()).is_meta:
            for module in self.modules():  # torchvision's (and the home code's) initialisation
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def _register(name: str, growth_rate: int, depth: int) -> None:
    @register_architecture(name, family=FAMILY, preset=named(CIFAR10_PRESET, name), default_classes=10)
    def build(num_classes: int) -> nn.Module:
        return CifarDenseNetBC(growth_rate, depth, num_classes)


for _name, (_k, _depth) in VARIANTS.items():
    _register(_name, _k, _depth)
