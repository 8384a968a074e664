"""The original image's pixel grid, on which every map of a comparison lives.

Each model sees the image through its own resize and crop; a map computed at a model's input is
placed back on the image's pixels by undoing that geometry, and is undefined (NaN) outside the
model's crop. So panels register, and T–S correlation, IoU and the difference compare the same
pixels whatever each model's preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.geometry import input_geometry
from ..models.preprocessing import Preprocessing

MAX_GRID_SIDE = 1024  # (our choice) larger images are shown on a uniformly scaled grid of this size


@dataclass(frozen=True)
class ImageGrid:
    """``height``×``width`` pixels covering the whole image; ``scale`` grid pixels per image pixel
    (1.0: the image's own pixels)."""

    height: int
    width: int
    scale: float = 1.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def image_grid(height: int, width: int, max_side: int = MAX_GRID_SIDE) -> ImageGrid:
    """The image's own pixel grid, or a uniformly scaled one when its longer side exceeds ``max_side``."""
    longest = max(height, width)
    if longest <= max_side:
        return ImageGrid(height, width)
    scale = max_side / longest
    return ImageGrid(max(1, round(height * scale)), max(1, round(width * scale)), scale)


def frame_on_grid(rgb: np.ndarray, grid: ImageGrid) -> np.ndarray:
    """The image's RGB pixels on the grid (itself when the grid is the image's own)."""
    if grid.shape == rgb.shape[:2]:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((grid.width, grid.height), Image.Resampling.BILINEAR))


def image_frame(image) -> np.ndarray:
    """A LoadedImage's RGB pixels on its grid."""
    return frame_on_grid(image.rgb, image_grid(*image.rgb.shape[:2]))


def mask_on_grid(mask: np.ndarray | None, grid: ImageGrid) -> np.ndarray | None:
    """A boolean object mask on the grid (nearest neighbour)."""
    if mask is None or grid.shape == mask.shape:
        return mask
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.asarray(image.resize((grid.width, grid.height), Image.Resampling.NEAREST)) > 127


def crop_window(image_shape: tuple[int, int], preprocessing: Preprocessing, grid: ImageGrid) -> tuple[slice, slice]:
    """The grid pixels whose centres fall inside the model's crop, as (rows, cols) slices."""
    geometry = input_geometry(*image_shape, preprocessing)
    y, x = geometry.input_coordinates(np.arange(grid.height), np.arange(grid.width), grid.shape)
    rows = np.nonzero((y >= 0) & (y < geometry.size))[0]
    cols = np.nonzero((x >= 0) & (x < geometry.size))[0]
    if rows.size == 0 or cols.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def common_window(image_shape: tuple[int, int], grid: ImageGrid, *preprocessings: Preprocessing) -> tuple[slice, slice]:
    """The grid pixels every model's crop covers, as (rows, cols) slices (empty when the crops do not overlap)."""
    windows = [crop_window(image_shape, pre, grid) for pre in preprocessings]
    rows = slice(max(w[0].start for w in windows), min(w[0].stop for w in windows))
    cols = slice(max(w[1].start for w in windows), min(w[1].stop for w in windows))
    return rows, cols


def maps_on_grid(low_res: torch.Tensor, image_shape: tuple[int, int], preprocessing: Preprocessing,
                 grid: ImageGrid) -> np.ndarray:
    """N×h×w maps at a model's input (any resolution that spans the whole input) placed on the
    grid: N×H×W float64, bilinear (as a resize to the input would be), NaN outside the model's crop.

    With the image's own grid and no crop this equals a bilinear resize of the map to the input.
    """
    geometry = input_geometry(*image_shape, preprocessing)
    y, x = geometry.input_coordinates(np.arange(grid.height, dtype=np.float64),
                                      np.arange(grid.width, dtype=np.float64), grid.shape)
    size = geometry.size
    ys = torch.from_numpy(2.0 * y / size - 1.0)
    xs = torch.from_numpy(2.0 * x / size - 1.0)
    sample = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1)  # H×W×(x, y)
    maps = low_res.detach().to("cpu", torch.float64)[:, None]
    placed = F.grid_sample(maps, sample.expand(maps.shape[0], -1, -1, -1), mode="bilinear",
                           padding_mode="border", align_corners=False)[:, 0].numpy()
    outside = ((y < 0) | (y >= size))[:, None] | ((x < 0) | (x >= size))[None, :]
    placed[:, outside] = np.nan
    return placed
