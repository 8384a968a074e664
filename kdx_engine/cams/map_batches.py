"""The METHODS §5 map metrics for N pairs of equal-size maps at once (a dataset scan's batch).

Each function equals its per-pair counterpart in ``map_comparison`` on every row (tested): the same
values and, for a degenerate row (a constant or non-finite map, an empty mask), the same NaN and reason,
which come from the per-pair function itself. Maps are N×H×W; masks N×H×W booleans.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..values import Value
from .map_comparison import energy_in_mask, pearson, pointing_game, spearman, top_fraction_iou


def _stack(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be N×H×W maps, got shape {arr.shape}")
    return arr


def _pair(a, b):
    """Two batches of maps as float64, the rows both functions take, and a NaN value per row to fill."""
    a, b = _stack(a, "maps a"), _stack(b, "maps b")
    if a.shape != b.shape:
        raise ValueError(f"map batches differ in shape: {a.shape} vs {b.shape}")
    return a, b, _regular(a, b), np.full(a.shape[0], math.nan)


def _with_masks(maps, masks):
    """Maps as float64 and masks as booleans of the same N×H×W, and both flattened per row."""
    maps = _stack(maps, "maps")
    masks = np.asarray(masks) > 0
    if masks.shape != maps.shape:
        raise ValueError(f"mask batch shape {masks.shape} differs from map batch shape {maps.shape}")
    return maps, masks, maps.reshape(maps.shape[0], -1), masks.reshape(maps.shape[0], -1)


def _regular(*batches: np.ndarray) -> np.ndarray:
    """Rows where every map is finite and not constant (the per-pair functions handle the rest)."""
    ok = np.ones(batches[0].shape[0], dtype=bool)
    for maps in batches:
        flat = maps.reshape(maps.shape[0], -1)
        ok &= np.isfinite(flat).all(axis=1)
        if flat.shape[1] == 0:
            return np.zeros_like(ok)
        with np.errstate(invalid="ignore"):
            ok &= flat.max(axis=1) != flat.min(axis=1)
    return ok


def _correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    r = np.einsum("ij,ij->i", xc, yc) / np.sqrt(np.einsum("ij,ij->i", xc, xc) * np.einsum("ij,ij->i", yc, yc))
    return np.clip(r, -1.0, 1.0)


def row_sort(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of N×P ``x`` sorted ascending, and the order that sorts it (torch's row sort is several
    times numpy's argsort here; the order within a tie does not matter to its users)."""
    ordered, order = torch.sort(torch.from_numpy(np.ascontiguousarray(x)), dim=1)
    return ordered.numpy(), order.numpy()


def average_ranks_rows(x: np.ndarray, sorted_rows: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """1-based ranks within each row of N×P ``x``, tied values sharing the mean of their ranks;
    ``sorted_rows``: ``row_sort(x)`` when at hand."""
    n, p = x.shape
    ordered, order = sorted_rows if sorted_rows is not None else row_sort(x)
    starts = np.ones((n, p), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones((n, p), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    positions = np.broadcast_to(np.arange(p), (n, p))
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, positions, p - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, p), dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def top_region_rows(x: np.ndarray, k: int, ordered: np.ndarray | None = None) -> np.ndarray:
    """Per row of N×P ``x``, the ``k`` largest values as a boolean N×P region; ties at the threshold go to
    the lower index (as ``map_comparison.top_pixels``' stable descending sort), in O(P) per row.
    ``ordered``: x's rows sorted ascending when at hand (else a partition finds the threshold)."""
    if ordered is not None:
        threshold = ordered[:, x.shape[1] - k:x.shape[1] - k + 1]
    else:
        threshold = -np.partition(-x, k - 1, axis=1)[:, k - 1:k]
    above = x > threshold
    tied = x == threshold
    room = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def _per_row(function, values: np.ndarray, ok: np.ndarray, *batches) -> list[Value]:
    return [Value(float(values[i])) if ok[i] else function(*(batch[i] for batch in batches))
            for i in range(ok.shape[0])]


def agreement_rows(a, b, fraction: float = 0.2) -> tuple[list[Value], list[Value], list[Value]]:
    """``pearson``, ``spearman`` and ``top_fraction_iou`` of a[i] and b[i] for every i: one conversion and
    one row sort per map batch, the top regions read off the sorted values the ranks come from."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b, ok, _ = _pair(a, b)
    pearsons, spearmans, ious = (np.full(a.shape[0], math.nan) for _ in range(3))
    if ok.any():
        rows = ok.sum()
        x, y = a[ok].reshape(rows, -1), b[ok].reshape(rows, -1)
        k = min(x.shape[1], max(1, math.floor(fraction * x.shape[1] + 0.5)))
        sorted_x, sorted_y = row_sort(x), row_sort(y)
        pearsons[ok] = _correlations(x, y)
        spearmans[ok] = _correlations(average_ranks_rows(x, sorted_x), average_ranks_rows(y, sorted_y))
        inter = (top_region_rows(x, k, sorted_x[0]) & top_region_rows(y, k, sorted_y[0])).sum(axis=1)
        ious[ok] = inter / (2 * k - inter)
    return (_per_row(pearson, pearsons, ok, a, b), _per_row(spearman, spearmans, ok, a, b),
            _per_row(lambda p, q: top_fraction_iou(p, q, fraction), ious, ok, a, b))


def energy_in_mask_rows(maps, masks) -> list[Value]:
    """``energy_in_mask(maps[i], masks[i])`` for every i."""
    maps, masks, flat, inside = _with_masks(maps, masks)
    energy = np.clip(np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    total = energy.sum(axis=1)
    ok = np.isfinite(flat).all(axis=1) & inside.any(axis=1) & (total > 0)
    values = np.where(ok, (energy * inside).sum(axis=1) / np.where(ok, total, 1.0), math.nan)
    return _per_row(energy_in_mask, values, ok, maps, masks)


def pointing_game_rows(maps, masks) -> list[Value]:
    """``pointing_game(maps[i], masks[i])`` (tolerance 0) for every i."""
    maps, masks, flat, inside = _with_masks(maps, masks)
    ok = _regular(maps) & inside.any(axis=1)
    values = np.full(maps.shape[0], math.nan)
    if ok.any():
        peaks = np.argmax(flat[ok], axis=1)
        values[ok] = np.take_along_axis(inside[ok], peaks[:, None], axis=1)[:, 0].astype(np.float64)
    return _per_row(pointing_game, values, ok, maps, masks)
