"""Preprocessing presets of the public zoos' training scripts (beside ``preprocessing``'s ImageNet and
CIFAR-100 presets): the statistics each family was normalised with when it was trained."""
from __future__ import annotations

import dataclasses

from ..preprocessing import IMAGENET_PRESET, Preprocessing

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
TINY_IMAGENET_MEAN = (0.4802, 0.4481, 0.3975)
TINY_IMAGENET_STD = (0.2302, 0.2265, 0.2262)
# TensorFlow's EfficientNet-Lite inputs: (pixel - 127) / 128, i.e. [-1, 1) in 0…1 units.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

CIFAR10_PRESET = Preprocessing(input_size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD, source="family-preset")
TINY_IMAGENET_PRESET = Preprocessing(input_size=64, mean=TINY_IMAGENET_MEAN, std=TINY_IMAGENET_STD,
                                     source="family-preset")


def named(preset: Preprocessing, architecture: str) -> Preprocessing:
    """``preset`` as the family preset of ``architecture``."""
    return dataclasses.replace(preset, architecture=architecture, source="family-preset")


def imagenet(architecture: str) -> Preprocessing:
    return named(IMAGENET_PRESET, architecture)
