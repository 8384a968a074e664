"""How small images are drawn: with visible pixels (nearest-neighbour, an integer factor), never blurred.

Only the drawing is upscaled; maps stay on the image's own pixel grid. Below ``SMALL_IMAGE`` px (the
longer side) an image is drawn at least 3.4× its size in a figure tile (1.45 in at 300 dpi is 435 px) and
usually more in the window, where smoothing would invent detail the model never saw and blur a map's
cells (CIFAR 32 px, Tiny-ImageNet 64 px, STL-10 96 px); larger images are shown near 1:1 or reduced.
"""
from __future__ import annotations

import math

import numpy as np

SMALL_IMAGE = 128  # px, longer side: below it the drawing is upscaled with nearest-neighbour
UPSCALED_SIDE = 512  # px the longer side reaches at least once upscaled (above a 300-dpi tile's 435 px)


def nearest_factor(shape: tuple[int, ...]) -> int:
    """The integer upscaling factor for drawing an image of ``shape`` (H, W, …): 1 unless it is small."""
    longer = max(shape[:2])
    if longer >= SMALL_IMAGE or longer <= 0:
        return 1
    return math.ceil(UPSCALED_SIDE / longer)


def nearest_upscaled(pixels: np.ndarray) -> np.ndarray:
    """The drawing of ``pixels`` (H×W or H×W×C): each pixel a ``nearest_factor`` square, or the array
    itself when the image is not small."""
    factor = nearest_factor(pixels.shape)
    if factor == 1:
        return pixels
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)
