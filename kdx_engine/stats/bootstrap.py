"""Seeded percentile bootstrap intervals for dataset metrics (METHODS §1: 200 resamples, 95%)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kdx_engine.stats.cka import linear_cka_from_gram
from kdx_engine.stats.distance_correlation import (
    partial_r2_centred,
    r2_star_centred,
    semi_partial_r2_centred,
    u_centre,
)

RESAMPLES = 200
LEVEL = 0.95


@dataclass(frozen=True)
class BootstrapInterval:
    """A statistic on all n samples and its bootstrap interval.

    Resampling with replacement repeats images, and a repeated pair is 0 apart in every model, which
    pushes R²* and CKA of a resample up. **(our choice)** The interval is therefore the percentile
    interval shifted by the bootstrap's bias estimate, ``bias = mean(resamples) − value``: it keeps the
    bootstrap's spread and is centred on the estimate instead of on the inflated resamples.

    ``dropped`` counts the resamples whose statistic was NaN (e.g. a resample holding one class
    only); the interval comes from the other ``resamples − dropped``.
    """

    value: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int
    dropped: int
    bias: float = 0.0


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> BootstrapInterval:
    """Bias-shifted percentile interval of ``statistic(indices)`` over resamples of n indices drawn with
    replacement (see ``BootstrapInterval``).

    ``statistic`` receives an int64 index array; ``statistic(arange(n))`` is the point value.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    value = float(statistic(np.arange(n)))
    draws = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=np.float64)
    kept = draws[~np.isnan(draws)]
    if not kept.size:
        return BootstrapInterval(value, math.nan, math.nan, level, resamples, seed, int(draws.size), math.nan)
    bias = float(kept.mean()) - value if math.isfinite(value) else 0.0  # no estimate to centre on
    low, high = np.percentile(kept, [50 * (1 - level), 50 * (1 + level)]) - bias
    return BootstrapInterval(value, float(low), float(high), level, resamples, seed, int(draws.size - kept.size), bias)


def _bootstrap_matrices(
    statistic: Callable[..., torch.Tensor],
    matrices: Sequence,
    centre: bool,
    resamples: int,
    seed: int,
    level: float,
) -> BootstrapInterval:
    """Bootstrap a statistic of n×n matrices; a resample indexes their rows and columns alike."""
    matrices = [torch.as_tensor(m, dtype=torch.float64) for m in matrices]

    @torch.no_grad()
    def resampled_statistic(indices: np.ndarray) -> float:
        indices = torch.as_tensor(indices, device=matrices[0].device)
        resampled = [m[indices[:, None], indices] for m in matrices]
        if centre:
            resampled = [u_centre(m) for m in resampled]
        return float(statistic(*resampled))

    return bootstrap_interval(resampled_statistic, matrices[0].shape[0], resamples, seed, level)


def bootstrap_r2_star(a, b, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> BootstrapInterval:
    """R²*(X, Y) with its interval, from n×n distance matrices a (of X) and b (of Y)."""
    return _bootstrap_matrices(r2_star_centred, (a, b), True, resamples, seed, level)


def bootstrap_semi_partial_r2(
    a, g, b, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> BootstrapInterval:
    """Semi-partial sR²(X, G | Y) with its interval, from distance matrices of X, G and Y."""
    return _bootstrap_matrices(semi_partial_r2_centred, (a, g, b), True, resamples, seed, level)


def bootstrap_partial_r2(a, g, b, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> BootstrapInterval:
    """Partial pdCor*(X, G; Y) with its interval, from distance matrices of X, G and Y."""
    return _bootstrap_matrices(partial_r2_centred, (a, g, b), True, resamples, seed, level)


def bootstrap_linear_cka(kx, ky, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> BootstrapInterval:
    """Linear CKA with its interval, from n×n Gram matrices of X and Y."""
    return _bootstrap_matrices(linear_cka_from_gram, (kx, ky), False, resamples, seed, level)
