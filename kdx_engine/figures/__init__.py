"""Rendering of maps: colormaps, overlays, panels, and figure export (PNG, SVG, PDF)."""
from .colormaps import COLORMAPS, apply_colormap
from .overlay import overlay
from .panel_rendering import DIVERGING, Scale, colormap_lut, panel_scales, render_panel, scaled

__all__ = ["COLORMAPS", "DIVERGING", "Scale", "apply_colormap", "colormap_lut", "overlay", "panel_scales",
           "render_panel", "scaled"]
