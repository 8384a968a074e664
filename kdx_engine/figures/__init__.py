"""Rendering of maps: colormaps, overlays and figure panels."""
from .colormaps import COLORMAPS, apply_colormap
from .overlay import overlay

__all__ = ["COLORMAPS", "apply_colormap", "overlay"]
