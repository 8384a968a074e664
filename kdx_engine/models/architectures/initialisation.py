"""Weight initialisation shared by the CIFAR-style families (Kaiming conv, unit BatchNorm)."""
from __future__ import annotations

from torch import nn


def init_conv_bn(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions and unit-scale, zero-shift BatchNorm, as the KD toolkits do."""
    if next(model.parameters()).is_meta:
        return  # a shapes-only build (fingerprinting): meta tensors hold no values to initialise
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
