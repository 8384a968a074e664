"""Per-image comparison of two saliency maps, and of a map with an object mask (METHODS §5).

Every metric returns a :class:`kdx_engine.values.Value` (also named ``MetricValue`` here): a float,
without an interval, or NaN together with the reason it is undefined for these maps (a constant
map, an empty mask, non-finite values). Maps whose shapes do not fit are a caller error and raise
``ValueError``. Maps and masks may be numpy arrays or torch tensors; they are converted once, to
float64 numpy, on entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..values import Value


# The engine's one value type; ``MetricValue`` stays as its name here for ``kdx_engine.cams``.
MetricValue = Value


@dataclass(frozen=True)
class MapComparison:
    """All comparison metrics for one image: map ``a`` (e.g. teacher) against map ``b`` (e.g. student).

    ``energy_*`` and ``pointing_*`` are ``None`` when no object mask was given.
    """

    pearson: Value
    spearman: Value
    top_iou: Value
    fraction: float
    energy_a: Value | None = None
    energy_b: Value | None = None
    pointing_a: Value | None = None
    pointing_b: Value | None = None
    tolerance: int = 0

    def to_dict(self) -> dict[str, float | str | None]:
        """Flat record for exports: each metric's value and, when undefined, ``<name>_reason``."""
        record: dict[str, float | str | None] = {"fraction": self.fraction, "tolerance": self.tolerance}
        for name in ("pearson", "spearman", "top_iou", "energy_a", "energy_b", "pointing_a", "pointing_b"):
            metric = getattr(self, name)
            if metric is None:
                continue
            record[name] = metric.value
            if metric.reason is not None:
                record[f"{name}_reason"] = metric.reason
        return record


def _as_map(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D H×W map, got shape {arr.shape}")
    return arr


def _as_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_map(a, "map a"), _as_map(b, "map b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _as_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from map shape {shape}")
    return mask > 0


def _degenerate(x: np.ndarray, name: str) -> str | None:
    """Why ``x`` supports no ordering or correlation, or None when it does."""
    if not np.isfinite(x).all():
        return f"{name} has non-finite values"
    if x.size == 0 or x.max() == x.min():
        return f"{name} is constant"
    return None


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    r = float(np.dot(xc, yc) / math.sqrt(float(np.dot(xc, xc)) * float(np.dot(yc, yc))))
    return min(1.0, max(-1.0, r))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of the flattened ``x``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(np.ravel(x), return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[inverse]


def pearson(a, b) -> Value:
    """Pearson correlation of two maps over their pixels; NaN when either map is constant."""
    a, b = _as_pair(a, b)
    reason = _degenerate(a, "map a") or _degenerate(b, "map b")
    if reason:
        return Value.undefined(reason)
    return Value(_correlation(a.ravel(), b.ravel()))


def spearman(a, b) -> Value:
    """Spearman rank correlation (average ranks for ties); NaN when either map is constant."""
    a, b = _as_pair(a, b)
    reason = _degenerate(a, "map a") or _degenerate(b, "map b")
    if reason:
        return Value.undefined(reason)
    return Value(_correlation(average_ranks(a), average_ranks(b)))


def top_pixels(x: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the ``k`` largest values; ties go to the lower (row-major) index."""
    return np.argsort(-np.ravel(x), kind="stable")[:k]


def top_fraction_iou(a, b, fraction: float = 0.2) -> Value:
    """IoU of the regions holding each map's top ``fraction`` of pixels.

    Both regions have k = round(fraction·H·W) pixels (halves round up, k ≥ 1), taken by a stable
    descending sort, so ties at the threshold are settled by row-major order. NaN for a constant map,
    whose region would be set by tie order alone.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b = _as_pair(a, b)
    reason = _degenerate(a, "map a") or _degenerate(b, "map b")
    if reason:
        return Value.undefined(reason)
    k = min(a.size, max(1, math.floor(fraction * a.size + 0.5)))
    inter = np.intersect1d(top_pixels(a, k), top_pixels(b, k), assume_unique=True).size
    return Value(inter / (2 * k - inter))


def energy_in_mask(saliency, mask) -> Value:
    """Share of the map's energy Σ map inside the mask.

    Negative values carry no energy and count as zero (CAMs are non-negative after their ReLU).
    NaN for an empty mask, a map with no positive value, or non-finite values.
    """
    saliency = _as_map(saliency, "map")
    inside = _as_mask(mask, saliency.shape)
    if not np.isfinite(saliency).all():
        return Value.undefined("map has non-finite values")
    if not inside.any():
        return Value.undefined("mask is empty")
    energy = np.clip(saliency, 0.0, None)
    total = float(energy.sum())
    if total == 0.0:
        return Value.undefined("map has no positive energy")
    return Value(float(energy[inside].sum()) / total)


def pointing_game(saliency, mask, tolerance: int = 0) -> Value:
    """1.0 when the map's maximum falls in the mask, or within ``tolerance`` pixels of it, else 0.0.

    The maximum is the first argmax in row-major order (as ``argmax`` on the flattened map), so a
    plateau of tied maxima is judged by one point. ``tolerance`` dilates the mask by a disc of that
    Euclidean radius, as in TorchRay's pointing game. NaN for an empty mask or a constant map.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    saliency = _as_map(saliency, "map")
    inside = _as_mask(mask, saliency.shape)
    reason = _degenerate(saliency, "map")
    if reason:
        return Value.undefined(f"{reason}: it has no maximum to point with")
    if not inside.any():
        return Value.undefined("mask is empty")
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    ys, xs = np.nonzero(inside)
    nearest_sq = int(((ys - y) ** 2 + (xs - x) ** 2).min())
    return Value(1.0 if nearest_sq <= tolerance * tolerance else 0.0)


def compare_maps(a, b, mask=None, fraction: float = 0.2, tolerance: int = 0) -> MapComparison:
    """Every §5 comparison metric for one pair of maps; mask metrics for each map when a mask is given."""
    a, b = _as_pair(a, b)
    mask_metrics = {}
    if mask is not None:
        inside = _as_mask(mask, a.shape)
        mask_metrics = dict(
            energy_a=energy_in_mask(a, inside),
            energy_b=energy_in_mask(b, inside),
            pointing_a=pointing_game(a, inside, tolerance),
            pointing_b=pointing_game(b, inside, tolerance),
        )
    return MapComparison(
        pearson=pearson(a, b),
        spearman=spearman(a, b),
        top_iou=top_fraction_iou(a, b, fraction),
        fraction=fraction,
        tolerance=tolerance,
        **mask_metrics,
    )
