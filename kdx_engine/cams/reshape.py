"""How to see a layer as an image (pytorch-grad-cam's ``reshape_transform``): a transform turns a layer's
output, and the gradients at it, into N×C×h×w before the CAM weights and combines channels.

``SpatialLayer`` (the default) takes N×C×H×W as it is and refuses any other shape; ``TokensAsImage``
lays a transformer's N×T×C tokens out on their patch grid after dropping the leading class (and
distillation) tokens.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


class ReshapeTransform(ABC):
    """A layer's output (or the gradient at it) as N×C×h×w; ValueError naming ``layer`` when it cannot."""

    @abstractmethod
    def __call__(self, tensor: torch.Tensor, layer: str) -> torch.Tensor:
        """The tensor laid out as N×C×h×w."""


@dataclass(frozen=True)
class SpatialLayer(ReshapeTransform):
    """A convolutional layer's N×C×H×W output, unchanged."""

    def __call__(self, tensor: torch.Tensor, layer: str) -> torch.Tensor:
        if tensor.dim() != 4:
            raise ValueError(f"layer {layer!r} has output shape {tuple(tensor.shape[1:])}; a CAM needs C×H×W "
                             f"(for a token layer, N×T×C, use TokensAsImage)")
        return tensor


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
