"""How a comparison's map is drawn: scale (per panel or shared), percentile threshold, colormap over
the image, and undefined pixels (outside a model's crop, or non-finite) drawn as such. One renderer
for the window and the exported figures, so both show the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .colormaps import apply_colormap
from .overlay import overlay

DIVERGING = "coolwarm"
EPS = 1e-7
UNDEFINED_GREY = 128.0
UNDEFINED_SHADE = 0.65  # weight of the grey over the image where a map is undefined
HATCH_PERIOD = 6  # pixels between the diagonal lines drawn over undefined pixels


@dataclass(frozen=True)
class Scale:
    """The values mapped to the colormap's ends."""

    low: float
    high: float


def panel_scales(panels: dict, shared: bool) -> dict[str, Scale]:
    """Per panel: its own min–max (a difference: ±its largest magnitude). Shared: one 0…max scale
    for each group of panels (the models' CAMs; the two UniCAM maps), so magnitudes compare."""
    scales: dict[str, Scale] = {}
    group_high: dict[str, float] = {}
    for key, panel in panels.items():
        if panel.values is None or panel.kind == "image":
            continue
        finite = panel.values[np.isfinite(panel.values)]
        if finite.size == 0:
            scales[key] = Scale(0.0, 1.0)
            continue
        if panel.kind == "difference":
            bound = 1.0 if shared else max(float(np.abs(finite).max()), EPS)
            scales[key] = Scale(-bound, bound)
        else:
            scales[key] = Scale(float(finite.min()), float(finite.max()))
            group_high[panel.group] = max(group_high.get(panel.group, 0.0), float(finite.max()))
    if shared:
        for key, panel in panels.items():
            if key in scales and panel.kind == "map":
                scales[key] = Scale(0.0, group_high[panel.group])
    return scales


def scaled(values: np.ndarray, scale: Scale) -> np.ndarray:
    """Values mapped to [0, 1] by the scale (NaN stays NaN)."""
    return np.clip((values - scale.low) / (scale.high - scale.low + EPS), 0.0, 1.0)


def render_panel(frame: np.ndarray, values: np.ndarray, kind: str, scale: Scale, colormap: str,
                 opacity: float, threshold: float) -> np.ndarray:
    """H×W×3 uint8: the colour-mapped values over the frame; pixels below the ``threshold`` percentile
    (of the magnitude, for a difference) show the plain frame; undefined (NaN) pixels show the frame
    greyed and hatched."""
    undefined = ~np.isfinite(values)
    unit = np.nan_to_num(scaled(values, scale), nan=0.0)
    colours = overlay(frame, unit, DIVERGING if kind == "difference" else colormap, opacity)
    if threshold > 0:
        strength = np.abs(values) if kind == "difference" else values
        finite = strength[~undefined]
        if finite.size:
            keep = np.zeros(values.shape, dtype=bool)
            keep[~undefined] = finite >= np.percentile(finite, threshold)
            colours = np.where(keep[..., None], colours, frame)
    if undefined.any():
        colours = np.where(undefined[..., None], undefined_pixels(frame), colours)
    return colours


def undefined_pixels(frame: np.ndarray) -> np.ndarray:
    """The frame greyed, with diagonal hatching: how pixels without a map value look."""
    grey = (1.0 - UNDEFINED_SHADE) * frame.astype(np.float64) + UNDEFINED_SHADE * UNDEFINED_GREY
    rows, cols = np.indices(frame.shape[:2])
    hatch = ((rows + cols) % HATCH_PERIOD) == 0
    grey[hatch] = 0.6 * grey[hatch]
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def colormap_lut(name: str) -> np.ndarray:
    """The colormap's 256×3 uint8 table (for the colour bar)."""
    return apply_colormap(np.linspace(0.0, 1.0, 256)[None, :], name)[0]
