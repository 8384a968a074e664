"""A strip of dataset plots under a figure panel: mean KL(T‖S) and KL(T‖B) against τ with their
intervals, and each model's 2-D feature projection coloured by true class (matplotlib axes).

The data arrive as plain arrays (``DistillationPlots``): the figures layer knows nothing of how they
were computed (``kdx_engine.dark_knowledge``, ``kdx_engine.embeddings``)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PLOT_KINDS = ("kl", "embeddings")
ROLE_COLOURS = {"teacher": "#1f77b4", "student": "#d62728", "base": "#2ca02c"}
ROLE_TITLES = {"teacher": "Teacher", "student": "Student", "base": "Base"}
ROLE_LETTERS = {"teacher": "T", "student": "S", "base": "B"}
STRIP_H = 2.0  # inches


@dataclass(frozen=True, eq=False)
class DistillationPlots:
    """What the strip draws: ``curves`` role → (τ, mean KL, low, high) arrays; ``projections`` role →
    n×2 coordinates with the rows' ``labels`` (−1 unknown); ``kinds`` which of ``PLOT_KINDS`` to draw."""

    kinds: tuple[str, ...]
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    projections: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    caption: str = ""

    def __post_init__(self):
        unknown = [k for k in self.kinds if k not in PLOT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown plot(s) {', '.join(unknown) or '(none given)'}; use some of {', '.join(PLOT_KINDS)}")

    def panels(self) -> int:
        """How many axes the strip holds."""
        return ("kl" in self.kinds) + (len(self.projections) if "embeddings" in self.kinds else 0)


def class_palette(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(count)]


def draw_strip(figure, plots: DistillationPlots, left: float, bottom: float, width: float, height: float,
               figure_width: float, figure_height: float, font: float) -> None:
    """The strip's axes side by side in the box (inches) ``left, bottom, width, height``."""
    count = plots.panels()
    if count == 0:
        return
    gap = 0.55
    w = (width - gap * (count - 1)) / count
    boxes = [(left + i * (w + gap), bottom + 0.55, w, height - 0.85) for i in range(count)]

    def axes(box):
        x, y, bw, bh = box
        return figure.add_axes((x / figure_width, y / figure_height, bw / figure_width, bh / figure_height))

    index = 0
    if "kl" in plots.kinds:
        _draw_curves(axes(boxes[index]), plots, font)
        index += 1
    if "embeddings" in plots.kinds:
        for role, coordinates in plots.projections.items():
            _draw_projection(axes(boxes[index]), role, coordinates, plots, font)
            index += 1
    if plots.caption:
        figure.text(left / figure_width, (bottom + 0.02) / figure_height, plots.caption, ha="left", va="bottom",
                    fontsize=font - 1, color="#333333")


def _draw_curves(ax, plots, font) -> None:
    for role, (tau, mean, low, high) in plots.curves.items():
        colour = ROLE_COLOURS.get(role, "#555555")
        ax.fill_between(tau, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.plot(tau, mean, color=colour, linewidth=1.2, marker="o", markersize=2,
                label=f"KL(T‖{ROLE_LETTERS.get(role, role)})")
    ax.set_xscale("log")
    ax.set_xlabel("τ", fontsize=font, labelpad=1)
    ax.set_ylabel("mean KL, nats", fontsize=font)
    ax.set_title("KL(T‖M) vs τ, 95% interval", fontsize=font)
    ax.tick_params(labelsize=font - 1)
    ax.legend(fontsize=font - 1, frameon=False)


def _draw_projection(ax, role, coordinates, plots, font) -> None:
    labels = plots.labels if plots.labels is not None else np.full(len(coordinates), -1)
    palette = class_palette(max(len(plots.class_names), int(labels.max(initial=-1)) + 1, 1))
    colours = [palette[c] if c >= 0 else (0.6, 0.6, 0.6, 1.0) for c in labels]
    ax.scatter(coordinates[:, 0], coordinates[:, 1], c=colours, s=5, linewidths=0)
    ax.set_title(f"{ROLE_TITLES.get(role, role)} features (2-D)", fontsize=font)
    ax.set_xticks([])
    ax.set_yticks([])
    if role == next(iter(plots.projections)) and plots.class_names:
        for c, name in enumerate(plots.class_names):
            ax.scatter([], [], color=palette[c], s=8, label=name)
        ax.legend(fontsize=font - 1.5, frameon=False, loc="best", handletextpad=0.1, borderaxespad=0.2)
