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
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..messages import printable
from .colormaps import apply_colormap
from .distillation_plots import STRIP_H, DistillationPlots, draw_strip
from .image_captions import distinct_captions
from .name_wrapping import wrap_name
from .panel_rendering import DIVERGING, panel_scales, render_panel, undefined_pixels
from .pixel_scaling import nearest_factor, nearest_upscaled

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
TITLE_H, CAPTION_H, METRIC_H, BAR_H = 0.24, 0.3, 0.22, 0.62  # BAR_H: one line of the legend
FONT = 7.0
NAME_W = LEFT - 0.08 - 0.06  # inches of the row's file name and true class, left of the first tile
NAME_LINES = 8
LEGEND_GAP, MIN_BAR, MAX_BAR, RIGHT_MARGIN = 0.6, 1.2, 2.4, 0.1
UNDEFINED_TEXT = "outside the model's crop (no value)"


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


def figure_size(rows: int, options: FigureOptions, legend_lines: int = 1) -> tuple[float, float]:
    """(width, height) in inches for ``rows`` images (and a legend of ``legend_lines`` lines)."""
    width = LEFT + len(options.columns) * (TILE + GAP) + 0.1
    row_h = TITLE_H + TILE + CAPTION_H + (METRIC_H if options.metrics else 0.0)
    return width, rows * row_h + (STRIP_H if options.plots is not None else 0.0) + legend_lines * BAR_H + 0.1


RC = {"svg.fonttype": "none", "pdf.fonttype": 42, "font.size": FONT, "font.family": "DejaVu Sans",
      "svg.hashsalt": "kdx", "path.simplify": False}


def render_figure(comparisons: Sequence, options: FigureOptions) -> bytes:
    """The encoded figure (PNG, SVG or PDF) of the comparisons, one row each."""
    from matplotlib import rc_context

    with rc_context(RC):
        figure = build_figure(comparisons, options)
        buffer = io.BytesIO()
        metadata = {"png": {"Software": "KDX"}, "svg": {"Date": None, "Creator": "KDX"},
                    "pdf": {"CreationDate": None, "Creator": "KDX", "Producer": "KDX"}}[options.format]
        figure.savefig(buffer, format=options.format, dpi=options.dpi, metadata=metadata)
    return buffer.getvalue()


def build_figure(comparisons: Sequence, options: FigureOptions):
    """The matplotlib Figure of the comparisons (no pyplot state); drawn under ``RC``."""
    if not comparisons:
        raise ValueError("a figure needs at least one image")
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(RC):
        undefined_seen = any(_has_undefined(c, options.columns) for c in comparisons)
        width = figure_size(len(comparisons), options)[0]
        legend = _legend_layout(_legend_items(comparisons[0], options, undefined_seen), width)
        height = figure_size(len(comparisons), options, legend_lines=legend.lines)[1]
        figure = Figure(figsize=(width, height), dpi=options.dpi)
        row_h = TITLE_H + TILE + CAPTION_H + (METRIC_H if options.metrics else 0.0)
        names = distinct_captions([(c.image.path.name, str(c.image.path)) for c in comparisons])
        for row, (comparison, name) in enumerate(zip(comparisons, names)):
            _draw_row(figure, comparison, name, options, height - row * row_h, width, height)
        legend_h = legend.lines * BAR_H
        if options.plots is not None:
            draw_strip(figure, options.plots, LEFT, legend_h + 0.1, width - LEFT - 0.2, STRIP_H, width, height, FONT)
        _draw_legend(figure, legend, width, height)
    return figure


def _has_undefined(comparison, columns) -> bool:
    """Whether a drawn map has pixels without a value (outside a model's crop, or non-finite)."""
    for key in columns:
        panel = comparison.panels.get(key)
        if panel is not None and panel.values is not None and panel.kind != "image" \
                and not np.isfinite(panel.values).all():
            return True
    return False


def _axes(figure, left, bottom, w, h, width, height):
    return figure.add_axes((left / width, bottom / height, w / width, h / height))


def _draw_row(figure, comparison, name, options, top, width, height) -> None:
    """One image's tiles, captions and metrics; ``name`` tells it apart from the other rows."""
    settings = comparison.settings
    scales = panel_scales(comparison.panels, settings.shared_scale)
    frame = comparison.frame
    tile_top = top - TITLE_H
    figure.text(0.08 / width, (tile_top - TILE / 2) / height, "\n".join(_row_label(comparison, name)),
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
        _show_tile(axes, rgb)
        caption = _caption(comparison, key, panel)
        if caption:
            figure.text((left + TILE / 2) / width, (tile_top - TILE - 0.04) / height,
                        "\n".join(textwrap.wrap(caption, 30)[:2]), ha="center", va="top", fontsize=FONT - 1)
    if options.metrics:
        text = _metrics_text(comparison, options.metrics)
        figure.text(LEFT / width, (tile_top - TILE - CAPTION_H - 0.02) / height, text, ha="left", va="top",
                    fontsize=FONT - 0.5, color="#333333")


def _row_label(comparison, name: str) -> list[str]:
    """The file name broken at separators and camelCase (never across the first tile), then the true class."""
    fits = _text_width_measure(FONT)
    name = wrap_name(printable(name), NAME_W, fits, max_lines=NAME_LINES - 2)
    label = f"true: {comparison.class_name(comparison.label)}" if comparison.label is not None else "true: unknown"
    return [*name, *wrap_name(label, NAME_W, fits, max_lines=3)]


def _show_tile(axes, rgb: np.ndarray) -> None:
    """A tile's pixels: a small image upscaled by an integer factor (nearest-neighbour) and embedded as
    is, so PDF and SVG viewers show square pixels at any zoom; a larger one resampled at the figure's dpi."""
    if nearest_factor(rgb.shape) > 1:
        axes.imshow(nearest_upscaled(rgb), interpolation="none", aspect="equal")
    else:
        axes.imshow(rgb, interpolation="nearest", aspect="equal")


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


@dataclass(frozen=True)
class LegendItem:
    """One thing the legend explains: a colour bar (its colormap, tick labels and title) or the swatch
    of pixels without a value."""

    kind: str  # "bar" or "undefined"
    title: str
    colormap: str = ""
    ticks: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class LegendLayout:
    """Where the legend's items go: (item, left in inches, line from the top), the bars' width, and
    how many lines the legend takes."""

    placed: tuple[tuple[LegendItem, float, int], ...]
    bar_w: float
    lines: int


def _legend_items(comparison, options, undefined_seen) -> list[LegendItem]:
    settings = comparison.settings
    scale = "shared scale: 0 … largest map value" if settings.shared_scale else "each map: its minimum … its maximum"
    items = [LegendItem("bar", f"map ({settings.colormap}; {scale})", settings.colormap,
                        ((0.0, "low"), (1.0, "high")))]
    if "difference" in options.columns:
        items.append(LegendItem("bar", "T − S (each map min–max scaled)", DIVERGING,
                                ((0.0, "−1 (S higher)"), (0.5, "0"), (1.0, "+1 (T higher)"))))
    if undefined_seen:
        items.append(LegendItem("undefined", UNDEFINED_TEXT))
    return items


def _legend_layout(items: Sequence[LegendItem], width: float) -> LegendLayout:
    """Everything on one line when the bars can stay at least ``MIN_BAR`` wide, else the bars on one
    line and the swatch under them, else one item per line: no label leaves the page."""
    measure = _text_width_measure(FONT - 1)
    bars = [item for item in items if item.kind == "bar"]
    notes = [item for item in items if item.kind != "bar"]
    room = width - LEFT - RIGHT_MARGIN
    spill = max((measure(item.ticks[-1][1]) / 2 for item in bars), default=0.0)
    note_w = 0.36 + measure(UNDEFINED_TEXT) + LEGEND_GAP if notes else 0.0

    def bars_fitting(extra: float) -> float:
        return min(MAX_BAR, (room - extra - (len(bars) - 1) * LEGEND_GAP - spill) / max(len(bars), 1))

    if bars_fitting(note_w) >= MIN_BAR or not notes and bars_fitting(0.0) >= MIN_BAR:
        bar_w, rows = bars_fitting(note_w if notes else 0.0), [list(items)]
    elif bars_fitting(0.0) >= MIN_BAR:
        bar_w, rows = bars_fitting(0.0), [bars, notes]
    else:
        bar_w, rows = min(MAX_BAR, room - spill), [[item] for item in items]
    placed = []
    for line, row in enumerate(rows):
        left = LEFT
        for item in row:
            placed.append((item, left, line))
            left += (bar_w if item.kind == "bar" else note_w) + LEGEND_GAP
    return LegendLayout(tuple(placed), bar_w, len(rows))


def _draw_legend(figure, layout: LegendLayout, width, height) -> None:
    small = _text_width_measure(FONT - 1)
    for item, left, line in layout.placed:
        bottom = 0.1 + (layout.lines - 1 - line) * BAR_H + 0.2
        if item.kind == "bar":
            _draw_bar(figure, item, left, bottom, layout.bar_w, width, height)
            continue
        axes = _axes(figure, left, bottom - 0.1, 0.3, 0.3, width, height)
        axes.imshow(undefined_pixels(np.full((24, 24, 3), 255, np.uint8)), interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        text_w = width - RIGHT_MARGIN - left - 0.36
        figure.text((left + 0.36) / width, (bottom + 0.05) / height,
                    "\n".join(line.rstrip() for line in wrap_name(item.title, text_w, small)),
                    va="center", fontsize=FONT - 1)


def _draw_bar(figure, item: LegendItem, left, bottom, bar_w, width, height) -> None:
    gradient = np.linspace(0.0, 1.0, 256)[None, :].repeat(2, axis=0)
    axes = _axes(figure, left, bottom, bar_w, 0.1, width, height)
    axes.imshow(apply_colormap(gradient, item.colormap), aspect="auto", interpolation="nearest")
    axes.set_yticks([])
    axes.set_xticks([255 * at for at, _ in item.ticks])
    axes.set_xticklabels([text for _, text in item.ticks], fontsize=FONT - 1)
    axes.tick_params(axis="x", length=2.5, pad=1.5)
    title = wrap_name(item.title, bar_w, _text_width_measure(FONT - 0.5), max_lines=3)
    axes.set_title("\n".join(line.rstrip() for line in title), fontsize=FONT - 0.5, pad=2)


@lru_cache(maxsize=8)
def _text_width_measure(size: float):
    """A function giving a text's width in inches at ``size`` points in the figure's font (DejaVu Sans,
    embedded in PDF and named in SVG), measured from its glyphs so that layout never depends on a backend."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    to_path, prop = TextToPath(), FontProperties(family="DejaVu Sans", size=size)

    @lru_cache(maxsize=4096)
    def width(text: str) -> float:
        return to_path.get_text_width_height_descent(text, prop, ismath=False)[0] / 72.0

    return width
