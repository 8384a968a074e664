"""A figure panel for a paper: rows of images × columns of panels (input, Teacher, Student, Base,
distilled, residual, T − S), with titles, predicted and true classes, colour bars and chosen metrics
under each row; PNG at a chosen DPI, or SVG and PDF with real text (matplotlib, no pyplot state).

Tiles are drawn by ``render_panel``, the renderer the window uses, so a tile shows the window's pixels.
"""
from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..output_paths import printable
from .colormaps import apply_colormap
from .distillation_plots import STRIP_H, DistillationPlots, draw_strip
from .panel_rendering import DIVERGING, panel_scales, render_panel, undefined_pixels

FORMATS = ("png", "svg", "pdf")
COLUMNS = ("input", "teacher", "student", "base", "distilled", "residual", "difference")
METRICS = {
    "kl": "KL(T‖S)",
    "pearson": "r(T,S)",
    "spearman": "ρ(T,S)",
    "top_iou": "IoU top-20%",
    "energy": "energy in mask T / S",
    "pointing": "pointing T / S",
}
DEFAULT_METRICS = ("kl", "pearson", "top_iou", "energy")
TILE = 1.45  # inches per tile
LEFT, GAP = 0.95, 0.08
TITLE_H, CAPTION_H, METRIC_H, BAR_H = 0.24, 0.3, 0.22, 0.62
FONT = 7.0


@dataclass(frozen=True)
class FigureOptions:
    """Which columns and metrics, the format and (for PNG) the resolution."""

    columns: tuple[str, ...] = COLUMNS
    metrics: tuple[str, ...] = DEFAULT_METRICS
    format: str = "png"
    dpi: int = 300
    plots: DistillationPlots | None = field(default=None, compare=False)  # a dataset strip under the rows

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"unknown figure format {self.format!r}; use one of {', '.join(FORMATS)}")
        unknown = [c for c in self.columns if c not in COLUMNS]
        if unknown or not self.columns:
            raise ValueError(f"unknown column(s) {', '.join(unknown) or '(none given)'}; use some of {', '.join(COLUMNS)}")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {', '.join(bad)}; use some of {', '.join(METRICS)}")
        if not 10 <= self.dpi <= 1200:
            raise ValueError(f"dpi {self.dpi} is outside 10…1200")


def figure_size(rows: int, options: FigureOptions) -> tuple[float, float]:
    """(width, height) in inches for ``rows`` images."""
    width = LEFT + len(options.columns) * (TILE + GAP) + 0.1
    row_h = TITLE_H + TILE + CAPTION_H + (METRIC_H if options.metrics else 0.0)
    return width, rows * row_h + (STRIP_H if options.plots is not None else 0.0) + BAR_H + 0.1


def render_figure(comparisons: Sequence, options: FigureOptions) -> bytes:
    """The encoded figure (PNG, SVG or PDF) of the comparisons, one row each."""
    if not comparisons:
        raise ValueError("a figure needs at least one image")
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    width, height = figure_size(len(comparisons), options)
    with rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "font.size": FONT, "font.family": "DejaVu Sans",
                     "svg.hashsalt": "kdx", "path.simplify": False}):
        figure = Figure(figsize=(width, height), dpi=options.dpi)
        row_h = TITLE_H + TILE + CAPTION_H + (METRIC_H if options.metrics else 0.0)
        undefined_seen = False
        for row, comparison in enumerate(comparisons):
            top = height - row * row_h
            undefined_seen |= _draw_row(figure, comparison, options, top, width, height)
        if options.plots is not None:
            draw_strip(figure, options.plots, LEFT, BAR_H + 0.1, width - LEFT - 0.2, STRIP_H, width, height, FONT)
        _draw_colour_bars(figure, comparisons[0], options, width, height, undefined_seen)
        buffer = io.BytesIO()
        metadata = {"png": {"Software": "KDX"}, "svg": {"Date": None, "Creator": "KDX"},
                    "pdf": {"CreationDate": None, "Creator": "KDX", "Producer": "KDX"}}[options.format]
        figure.savefig(buffer, format=options.format, dpi=options.dpi, metadata=metadata)
    return buffer.getvalue()


def _axes(figure, left, bottom, w, h, width, height):
    return figure.add_axes((left / width, bottom / height, w / width, h / height))


def _draw_row(figure, comparison, options, top, width, height) -> bool:
    """One image's tiles, captions and metrics; whether any tile has undefined pixels."""
    settings = comparison.settings
    scales = panel_scales(comparison.panels, settings.shared_scale)
    frame = comparison.frame
    tile_top = top - TITLE_H
    undefined = False
    label = f"true: {comparison.class_name(comparison.label)}" if comparison.label is not None else "true: unknown"
    figure.text(0.08 / width, (tile_top - TILE / 2) / height,
                "\n".join([*textwrap.wrap(printable(comparison.image.path.name), 16), label]),
                ha="left", va="center", fontsize=FONT)
    for column, key in enumerate(options.columns):
        left = LEFT + column * (TILE + GAP)
        panel = comparison.panels.get(key)
        axes = _axes(figure, left, tile_top - TILE, TILE, TILE, width, height)
        axes.set_xticks([])
        axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_linewidth(0.4)
        figure.text((left + TILE / 2) / width, (tile_top + 0.05) / height,
                    panel.title if panel is not None else key, ha="center", va="bottom", fontsize=FONT + 0.5,
                    fontweight="bold")
        if panel is None or panel.values is None:
            message = panel.message if panel is not None else "not computed"
            axes.set_facecolor("#eeeeee")
            axes.text(0.5, 0.5, "\n".join(textwrap.wrap(message or "no map", 24)), ha="center", va="center",
                      fontsize=FONT - 1.5, color="#5f6368", transform=axes.transAxes)
            continue
        if panel.kind == "image":
            rgb = panel.values
        else:
            rgb = render_panel(frame, panel.values, panel.kind, scales[key], settings.colormap, settings.opacity,
                               settings.threshold)
            undefined |= bool((~np.isfinite(panel.values)).any())
        axes.imshow(rgb, interpolation="nearest", aspect="equal")
        caption = _caption(comparison, key, panel)
        if caption:
            figure.text((left + TILE / 2) / width, (tile_top - TILE - 0.04) / height,
                        "\n".join(textwrap.wrap(caption, 30)[:2]), ha="center", va="top", fontsize=FONT - 1)
    if options.metrics:
        text = _metrics_text(comparison, options.metrics)
        figure.text(LEFT / width, (tile_top - TILE - CAPTION_H - 0.02) / height, text, ha="left", va="top",
                    fontsize=FONT - 0.5, color="#333333")
    return undefined


def _caption(comparison, key, panel) -> str:
    prediction = comparison.predictions.get(key)
    note = "⚠ " + panel.note if panel.note else ""
    if prediction is not None:
        name = comparison.class_name(prediction.predicted)
        text = f"pred {name} ({prediction.probabilities[prediction.predicted]:.2f})"
        if prediction.target is not None and prediction.target != prediction.predicted:
            text += f" · map of {comparison.class_name(prediction.target)}"
        return f"{text} {note}".strip()
    return note


def metric_values(comparison) -> dict[str, float | None]:
    """The row's metrics by name (None where undefined)."""
    record = comparison.map_metrics

    def value(name):
        v = record.get(name)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    return {"kl": comparison.kl_teacher_student, "pearson": value("pearson"), "spearman": value("spearman"),
            "top_iou": value("top_iou"), "energy_teacher": value("energy_a"), "energy_student": value("energy_b"),
            "pointing_teacher": value("pointing_a"), "pointing_student": value("pointing_b")}


def _metrics_text(comparison, names) -> str:
    values = metric_values(comparison)

    def fmt(v, digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}"

    parts = []
    for name in names:
        if name in ("energy", "pointing"):
            a, b = values[f"{name}_teacher"], values[f"{name}_student"]
            if a is None and b is None:
                parts.append(f"{METRICS[name]}: n/a (no mask)" if comparison.mask is None else f"{METRICS[name]}: n/a")
            else:
                parts.append(f"{METRICS[name]}: {fmt(a, 2)} / {fmt(b, 2)}")
        else:
            parts.append(f"{METRICS[name]}: {fmt(values[name], 4 if name == 'kl' else 3)}")
    return "   ·   ".join(parts)


def _draw_colour_bars(figure, comparison, options, width, height, undefined_seen) -> None:
    settings = comparison.settings
    bar_w, bar_h, bottom = min(2.4, (width - LEFT) / 2.6), 0.1, 0.34
    gradient = np.linspace(0.0, 1.0, 256)[None, :].repeat(2, axis=0)
    axes = _axes(figure, LEFT, bottom, bar_w, bar_h, width, height)
    axes.imshow(apply_colormap(gradient, settings.colormap), aspect="auto", interpolation="nearest")
    axes.set_yticks([])
    axes.set_xticks([0, 255])
    scale = "shared scale: 0 … largest map value" if settings.shared_scale else "each map: its minimum … its maximum"
    axes.set_xticklabels(["low", "high"], fontsize=FONT - 1)
    axes.set_title(f"map ({settings.colormap}; {scale})", fontsize=FONT - 0.5, pad=2)
    left = LEFT + bar_w + 0.45
    if "difference" in options.columns:
        axes = _axes(figure, left, bottom, bar_w, bar_h, width, height)
        axes.imshow(apply_colormap(gradient, DIVERGING), aspect="auto", interpolation="nearest")
        axes.set_yticks([])
        axes.set_xticks([0, 127.5, 255])
        axes.set_xticklabels(["−1 (S higher)", "0", "+1 (T higher)"], fontsize=FONT - 1)
        axes.set_title("T − S (each map min–max scaled)", fontsize=FONT - 0.5, pad=2)
        left += bar_w + 0.45
    if undefined_seen and left + 0.3 < width:
        axes = _axes(figure, left, bottom, 0.3, 0.3, width, height)
        axes.imshow(undefined_pixels(np.full((24, 24, 3), 255, np.uint8)), interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        figure.text((left + 0.36) / width, (bottom + 0.15) / height, "outside the model's crop (no value)",
                    va="center", fontsize=FONT - 1)
