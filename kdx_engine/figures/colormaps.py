"""Colormaps as 256-entry lookup tables, interpolated from anchor colours (no matplotlib needed)."""
from __future__ import annotations

import numpy as np

_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
                "#b5de2b", "#fde725"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06",
                "#f7d13d", "#fcffa4"],
    "jet": ["#00007f", "#0000ff", "#007fff", "#00ffff", "#7fff7f", "#ffff00", "#ff7f00", "#ff0000", "#7f0000"],
    "gray": ["#000000", "#ffffff"],
    "coolwarm": ["#3b4cc0", "#7396f5", "#b0cbfc", "#dddddd", "#f6bfa6", "#e7745b", "#b40426"],
}


def _lut(anchors: list[str]) -> np.ndarray:
    colours = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in anchors], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(colours))
    grid = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(grid, positions, colours[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


COLORMAPS: dict[str, np.ndarray] = {name: _lut(anchors) for name, anchors in _ANCHORS.items()}


def apply_colormap(values: np.ndarray, name: str = "jet") -> np.ndarray:
    """H×W values in [0, 1] → H×W×3 uint8 colours (NaN shown as the lowest colour)."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; use one of {', '.join(COLORMAPS)}")
    index = np.nan_to_num(np.clip(values, 0.0, 1.0), nan=0.0) * 255
    return COLORMAPS[name][np.rint(index).astype(np.intp)]
