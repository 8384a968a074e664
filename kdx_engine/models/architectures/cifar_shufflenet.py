"""CIFAR ShuffleNets of the KD zoo, registered as ``ShuffleV1`` and ``ShuffleV2``.

Parameter names and shapes are those of RepDistiller ``models/ShuffleNetv1.py`` /
``models/ShuffleNetv2.py`` and mdistiller ``mdistiller/models/cifar/ShuffleNetv1.py`` /
``ShuffleNetv2.py`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``linear``; V2 adds ``conv2``,
``bn2``). Stages ``layer1..layer3`` return one tensor and the networks return logits only.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ..preprocessing import CIFAR_PRESET
from ..registry import register_architecture


class ChannelShuffle(nn.Module):
    """Interleave the channels of ``groups`` groups: [N, g*c, H, W] -> [N, c*g, H, W]."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleV1Unit(nn.Module):
    """Grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; stride 2 concatenates an average-pooled
    input, stride 1 adds it. The first unit after the 24-channel stem uses an ungrouped first 1x1."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int):
        super().__init__()
        mid_planes = out_planes // 4
        first_groups = 1 if in_planes == 24 else groups
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.shuffle1 = ChannelShuffle(first_groups)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1,
                               groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1)) if stride == 2 else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        return F.relu(torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut)


class ShuffleNetV1(nn.Module):
    """1x1 stem to 24 channels (no downsampling), three stages each starting with stride 2, 4x4 pool."""

    def __init__(self, out_planes: tuple[int, int, int], blocks: tuple[int, int, int], groups: int,
                 num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_planes = 24
        for index, (planes, count) in enumerate(zip(out_planes, blocks), start=1):
            # The first unit concatenates its pooled input, so it only adds ``planes - in_planes`` channels.
            units = [ShuffleV1Unit(in_planes, planes - in_planes, 2, groups)]
            units += [ShuffleV1Unit(planes, planes, 1, groups) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*units))
            in_planes = planes
        self.linear = nn.Linear(out_planes[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))


class SplitHalves(nn.Module):
    """The first ``int(C * ratio)`` channels and the rest."""

    def __init__(self, ratio: float):
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = int(x.shape[1] * self.ratio)
        return x[:, :c], x[:, c:]


class ShuffleV2Unit(nn.Module):
    """Keep half the channels, run the other half through 1x1, depthwise 3x3, 1x1; concat, shuffle."""

    def __init__(self, channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split = SplitHalves(split_ratio)
        half = int(channels * split_ratio)
        self.conv1 = nn.Conv2d(half, half, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, kernel_size=3, stride=1, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, branch = self.split(x)
        out = F.relu(self.bn1(self.conv1(branch)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return self.shuffle(torch.cat([kept, out], 1))


class ShuffleV2Down(nn.Module):
    """Two stride-2 branches (depthwise then 1x1; 1x1, depthwise, 1x1), concatenated and shuffled."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1,
                               groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    """1x1 stem to 24 channels, three stages (a down unit then basic units), 1x1 conv, 4x4 pool."""

    def __init__(self, out_channels: tuple[int, int, int, int], blocks: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_channels = 24
        for index, (channels, count) in enumerate(zip(out_channels[:3], blocks), start=1):
            units = [ShuffleV2Down(in_channels, channels)] + [ShuffleV2Unit(channels) for _ in range(count)]
            setattr(self, f"layer{index}", nn.Sequential(*units))
            in_channels = channels
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))


def _preset(name: str):
    return dataclasses.replace(CIFAR_PRESET, architecture=name, source="family-preset")


@register_architecture("ShuffleV1", family="cifar_shufflenet", preset=_preset("ShuffleV1"), default_classes=100)
def shufflenet_v1(num_classes: int) -> nn.Module:
    return ShuffleNetV1((240, 480, 960), (4, 8, 4), groups=3, num_classes=num_classes)


@register_architecture("ShuffleV2", family="cifar_shufflenet", preset=_preset("ShuffleV2"), default_classes=100)
def shufflenet_v2(num_classes: int) -> nn.Module:
    return ShuffleNetV2((116, 232, 464, 1024), (3, 7, 3), num_classes=num_classes)
