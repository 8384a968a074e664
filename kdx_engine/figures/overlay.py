"""A map blended over the image it explains."""
from __future__ import annotations

import numpy as np

from .colormaps import apply_colormap


def overlay(image_rgb: np.ndarray, normalised_map: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """Blend the colour-mapped map (values in [0, 1], same H×W as the image) over the RGB image."""
    if image_rgb.shape[:2] != normalised_map.shape:
        raise ValueError(f"map shape {normalised_map.shape} does not match image shape {image_rgb.shape[:2]}")
    colours = apply_colormap(normalised_map, colormap).astype(np.float64)
    blended = (1.0 - opacity) * image_rgb.astype(np.float64) + opacity * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
