"""Visual concepts from entropy maps (METHODS §6): H̄, concept cells, N_fg, N_bg, λ_ratio, with intervals.

``H̄`` is the mean entropy of all background cells of the analysed images (per model); a cell is a
visual concept when ``H̄ − H_c > b``. A cell belongs to the foreground when at least half of its pixels
lie in the object mask **(our choice)**. Without masks there is no background: ``H̄`` is then the mean
entropy of all cells **(our choice)** and only ``N = N_fg + N_bg`` is reported, and that is said.
Intervals are delete-one jackknife intervals over the images (``kdx_engine.stats.jackknife``), with
``H̄`` recomputed in every replicate (it depends on all the images).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from kdx_engine.stats.jackknife import jackknife_interval
from kdx_engine.values import Value

THRESHOLD = 0.2
NO_MASKS_NOTE = ("no object masks: H̄ is the mean entropy of all cells and only N = N_fg + N_bg is "
                 "reported (N_fg, N_bg and λ_ratio need masks, name.mask.png beside each image)")


def foreground_cells(mask: np.ndarray, grid: int) -> np.ndarray:
    """The G×G cells of an H×W boolean mask that are at least half foreground."""
    mask = np.asarray(mask, dtype=np.float64)
    height, width = mask.shape
    rows = np.minimum((np.arange(height) * grid) // height, grid - 1)
    cols = np.minimum((np.arange(width) * grid) // width, grid - 1)
    sums = np.zeros((grid, grid))
    counts = np.zeros((grid, grid))
    np.add.at(sums, (rows[:, None], cols[None, :]), mask)
    np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
    return sums >= 0.5 * np.maximum(counts, 1.0)


def mean_background_entropy(entropies: np.ndarray, foreground: np.ndarray | None) -> float:
    """H̄: the mean entropy of the background cells of all images (of all cells without masks)."""
    entropies = np.asarray(entropies)
    if foreground is None:
        return float(entropies.mean())
    background = ~np.asarray(foreground, dtype=bool)
    if not background.any():
        return float("nan")
    return float(entropies[background].mean())


def concept_cells(entropies: np.ndarray, h_bar: float, threshold: float = THRESHOLD) -> np.ndarray:
    """Cells that are visual concepts: ``H̄ − H_c > b`` (boolean, shaped like ``entropies``)."""
    return (h_bar - np.asarray(entropies)) > threshold


@dataclass(frozen=True, eq=False)
class ConceptCounts:
    """Per-image counts of one model; ``n_fg``/``n_bg`` are None without masks (only ``n``)."""

    h_bar: float
    threshold: float
    concepts: np.ndarray
    n: np.ndarray
    n_fg: np.ndarray | None
    n_bg: np.ndarray | None

    @property
    def has_masks(self) -> bool:
        return self.n_fg is not None


def count_concepts(entropies: np.ndarray, foreground: np.ndarray | None,
                   threshold: float = THRESHOLD) -> ConceptCounts:
    """Concept cells and their counts for n images (entropies n×G×G, foreground n×G×G bool or None)."""
    entropies = np.asarray(entropies, dtype=np.float64)
    h_bar = mean_background_entropy(entropies, foreground)
    concepts = concept_cells(entropies, h_bar, threshold)
    n = concepts.reshape(len(concepts), -1).sum(1)
    if foreground is None:
        return ConceptCounts(h_bar, threshold, concepts, n, None, None)
    foreground = np.asarray(foreground, dtype=bool)
    n_fg = (concepts & foreground).reshape(len(concepts), -1).sum(1)
    return ConceptCounts(h_bar, threshold, concepts, n, n_fg, n - n_fg)


def foreground_ratio(counts: ConceptCounts) -> float:
    """λ_ratio = mean_x N_fg/(N_fg + N_bg) over the images with at least one concept."""
    total = counts.n_fg + counts.n_bg
    kept = total > 0
    return float(np.mean(counts.n_fg[kept] / total[kept])) if kept.any() else float("nan")


STATISTICS: dict[str, Callable[[ConceptCounts], float]] = {
    "N": lambda c: float(np.mean(c.n)),
    "N_fg": lambda c: float(np.mean(c.n_fg)),
    "N_bg": lambda c: float(np.mean(c.n_bg)),
    "lambda_ratio": foreground_ratio,
}
UNDEFINED = {"lambda_ratio": "undefined: no image has a concept cell (N_fg + N_bg = 0 everywhere)",
             "N": "undefined: H̄ is undefined (no background cell)"}
BOUNDS = {"N": (0.0, np.inf), "N_fg": (0.0, np.inf), "N_bg": (0.0, np.inf), "lambda_ratio": (0.0, 1.0)}


def statistic_names(has_masks: bool) -> tuple[str, ...]:
    return ("N", "N_fg", "N_bg", "lambda_ratio") if has_masks else ("N",)


def _take(array, indices):
    return None if array is None else np.asarray(array)[indices]


def count_statistics(entropies: np.ndarray, foreground: np.ndarray | None, threshold: float = THRESHOLD,
                     ) -> dict[str, Value]:
    """Mean N (and with masks N_fg, N_bg, λ_ratio) over the images, each with its jackknife interval."""
    entropies = np.asarray(entropies)
    result = {}
    for name in statistic_names(foreground is not None):
        def statistic(indices, name=name):
            return STATISTICS[name](count_concepts(entropies[indices], _take(foreground, indices), threshold))
        result[name] = explained(jackknife_interval(statistic, len(entropies), bounds=BOUNDS[name]).as_value(),
                                 UNDEFINED.get(name))
    return result


def count_differences(entropies_a: np.ndarray, entropies_b: np.ndarray, foreground: np.ndarray | None,
                      threshold: float = THRESHOLD) -> dict[str, Value]:
    """Model a − model b for each statistic on the same images (paired jackknife: one image out of both)."""
    result = {}
    for name in statistic_names(foreground is not None):
        def statistic(indices, name=name):
            fg = _take(foreground, indices)
            a = STATISTICS[name](count_concepts(np.asarray(entropies_a)[indices], fg, threshold))
            b = STATISTICS[name](count_concepts(np.asarray(entropies_b)[indices], fg, threshold))
            return a - b
        result[name] = explained(jackknife_interval(statistic, len(entropies_a)).as_value(), UNDEFINED.get(name))
    return result


def explained(value: Value, reason: str | None) -> Value:
    """``value``, with ``reason`` when the value itself is undefined (the jackknife's own reason speaks of
    variance terms, which is not why a count statistic is undefined)."""
    if value.is_defined or reason is None:
        return value
    return Value.undefined(reason)


def value_record(value: Value) -> dict:
    """A Value as JSON (NaN as null)."""
    finite = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
    return {"value": finite(value.value), "low": finite(value.low), "high": finite(value.high),
            "reason": value.reason}


def stack_foreground(masks: Sequence[np.ndarray | None], grid: int) -> np.ndarray | None:
    """The images' foreground cells (n×G×G), or None unless every image has a mask."""
    if not masks or any(mask is None for mask in masks):
        return None
    return np.stack([foreground_cells(mask, grid) for mask in masks])
