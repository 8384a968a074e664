"""Where a model's input lies in the original image: the resize, padding and centre crop of
``Preprocessing``, as numbers, so a map at the model's input can be placed back on the image's pixels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdx_engine.models.preprocessing import Preprocessing


@dataclass(frozen=True)
class InputGeometry:
    """An H×W image resized to ``resized`` (h, w), zero-padded by ``pad`` (top, left) where it is
    smaller than the crop, then cropped S×S from ``crop`` (top, left) of the padded image."""

    image: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int]
    crop: tuple[int, int]
    size: int

    def input_coordinates(self, rows: np.ndarray, cols: np.ndarray, grid: tuple[int, int]):
        """Continuous input-pixel coordinates (edge units, 0…S) of the centres of a grid's pixels; the
        grid covers the whole image with ``grid`` (rows, cols) pixels."""
        (gh, gw), (rh, rw) = grid, self.resized
        y = (rows + 0.5) * rh / gh + self.pad[0] - self.crop[0]
        x = (cols + 0.5) * rw / gw + self.pad[1] - self.crop[1]
        return y, x


def input_geometry(height: int, width: int, preprocessing: Preprocessing) -> InputGeometry:
    """The geometry torchvision's Resize(shorter side) + CenterCrop (or a direct S×S resize) gives."""
    size = preprocessing.input_size
    if preprocessing.resize is None:
        resized = (size, size)
    else:
        short, long = sorted((height, width))
        new_long = int(preprocessing.resize * long / short)
        resized = (preprocessing.resize, new_long) if height <= width else (new_long, preprocessing.resize)
    pad_h, pad_w = max(size - resized[0], 0), max(size - resized[1], 0)
    padded = (resized[0] + pad_h, resized[1] + pad_w)
    crop = (int(round((padded[0] - size) / 2.0)), int(round((padded[1] - size) / 2.0)))
    return InputGeometry((height, width), resized, (pad_h // 2, pad_w // 2), crop, size)
