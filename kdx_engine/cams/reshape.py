"""How to see a layer as an image (pytorch-grad-cam's ``reshape_transform``): a transform turns a layer's
output, and the gradients at it, into N×C×h×w before the CAM weights and combines channels.

``SpatialLayer`` takes N×C×H×W as it is and refuses any other shape; ``TokensAsImage`` lays a
transformer's N×T×C tokens out on their patch grid after dropping the leading class (and distillation)
tokens; ``ChannelsLast`` turns a Swin stage's N×H×W×C into N×C×H×W. ``transform_for`` picks the one a
layer needs from the shape probe (``LayerInfo.layout``), so every CAM method works on token layers.
``restore`` puts an image-laid tensor back into the layer's own layout (what Ablation-CAM writes back).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..models.backend import HWC, TOKENS, LayerInfo


class ReshapeTransform(ABC):
    """A layer's output (or the gradient at it) as N×C×h×w; ValueError naming ``layer`` when it cannot."""

    @abstractmethod
    def __call__(self, tensor: torch.Tensor, layer: str) -> torch.Tensor:
        """The tensor laid out as N×C×h×w."""

    @abstractmethod
    def restore(self, image: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """``image`` (N×C×h×w) back in the layout of ``original`` (the layer's output for one image,
        1×…; tokens that are not on the grid are taken from it)."""


@dataclass(frozen=True)
class SpatialLayer(ReshapeTransform):
    """A convolutional layer's N×C×H×W output, unchanged."""

    def __call__(self, tensor: torch.Tensor, layer: str) -> torch.Tensor:
        if tensor.dim() != 4:
            raise ValueError(f"layer {layer!r} has output shape {tuple(tensor.shape[1:])}; a CAM needs C×H×W "
                             f"(for a token layer, N×T×C, use TokensAsImage)")
        return tensor

    def restore(self, image: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        return image


@dataclass(frozen=True)
class ChannelsLast(ReshapeTransform):
    """A channels-last N×H×W×C output (timm's Swin stages) as N×C×H×W."""

    def __call__(self, tensor: torch.Tensor, layer: str) -> torch.Tensor:
        if tensor.dim() != 4:
            raise ValueError(f"layer {layer!r} has output shape {tuple(tensor.shape[1:])}; ChannelsLast needs "
                             f"H×W×C")
        return tensor.permute(0, 3, 1, 2)

    def restore(self, image: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        return image.permute(0, 2, 3, 1)


@dataclass(frozen=True)
class TokensAsImage(ReshapeTransform):
    """N×T×C tokens → N×C×h×w: the first ``drop`` tokens (class, distillation) are left out and the rest
    fill an h×w grid row by row; ``grid`` is h×w (an int for a square), else √(T − drop) each way."""

    drop: int = 1
    grid: int | tuple[int, int] | None = None

    def __call__(self, tensor: torch.Tensor, layer: str) -> torch.Tensor:
        if tensor.dim() != 3:
            raise ValueError(f"layer {layer!r} has output shape {tuple(tensor.shape[1:])}; TokensAsImage needs "
                             f"T×C tokens")
        n, tokens, channels = tensor.shape
        patches = tokens - self.drop
        if self.grid is None:
            side = math.isqrt(max(patches, 0))
            height, width = side, side
        elif isinstance(self.grid, int):
            height, width = self.grid, self.grid
        else:
            height, width = self.grid
        if patches < 1 or height * width != patches:
            raise ValueError(f"layer {layer!r}: {tokens} tokens less {self.drop} leave {patches}, which do not "
                             f"fill a {height}×{width} grid; give TokensAsImage's grid (or drop)")
        return tensor[:, self.drop:].reshape(n, height, width, channels).permute(0, 3, 1, 2)

    def restore(self, image: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        patches = image.flatten(2).transpose(1, 2)
        return torch.cat([original[:, :self.drop].expand(n, -1, -1), patches], dim=1)


def transform_for(layer: LayerInfo | None) -> ReshapeTransform:
    """The transform that shows ``layer`` as an image, from its probed layout: tokens on their grid (the
    prefix tokens dropped), channels-last stages permuted, C×H×W (and layers the probe does not list)
    as they are."""
    if layer is not None and layer.layout == TOKENS:
        return TokensAsImage(drop=layer.prefix_tokens, grid=tuple(layer.grid))
    if layer is not None and layer.layout == HWC:
        return ChannelsLast()
    return SpatialLayer()
