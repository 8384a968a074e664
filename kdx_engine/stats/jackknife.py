"""Delete-one jackknife intervals for dataset metrics (METHODS §1: never resample with replacement).

Each replicate leaves one image out: its row and column are dropped from the n×n distance (or Gram)
matrices and the rest is re-centred; no image is ever held twice and no new forward pass is needed.
The interval is ``centre ± z·se`` with the jackknife standard error
``se² = (n−1)/n · Σ_k (θ_(k) − θ̄)²`` and z the normal quantile, clipped to the statistic's range.
For R²*, its partial forms and debiased linear CKA (U-centred HSIC, the CKA dataset metrics
report) the centre is the full-sample estimate (their bias is negligible beside se). The plain
linear CKA estimator is biased upwards by O(1/n) (0.07 at n = 64, d = 10: two standard errors), so
its interval is centred on the jackknife's bias-corrected estimate ``value − bias`` while ``value``
stays the plain CKA; even so it covered only 0.90 there, against 0.98 for debiased CKA.
``benchmarks/interval_coverage.py`` measures the coverage of all of them.

All n replicates cost O(n²) together, about one evaluation of the statistic: U-centring is invariant
to adding ``u_i + u_j`` to a symmetric matrix, so the full-sample Ã is a valid input to the
subsample's U-centring, and since Ã's row sums are zero, the inner product of the subsample without
image k follows from ``S = Σ Ã∘B̃`` and the k-th row sum of Ã∘B̃ alone (the same holds for the
U-centred Gram matrices of debiased CKA, and in a similar form for the double centring of linear CKA).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from kdx_engine.stats.cka import debiased_linear_cka_from_gram, linear_cka_from_gram, u_centred_gram
from kdx_engine.stats.distance_correlation import (
    MIN_SAMPLES,
    partial_r2_centred,
    r2_star_centred,
    semi_partial_r2_centred,
    u_centre,
)
from kdx_engine.values import Value

LEVEL = 0.95
METHOD = "delete-one jackknife, normal"
BIAS_CORRECTED_METHOD = "delete-one jackknife, normal, centred on the bias-corrected estimate"
# A projection residual whose squared norm is below this fraction of its source's is treated as
# exactly zero (X's geometry a multiple of Y's); the subtractive formula leaves ~1e-16 of noise.
RESIDUAL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Interval:
    """A statistic on all n images and its delete-one jackknife interval (see the module docstring).

    ``replicates`` counts the leave-one-out values that entered the standard error; ``dropped`` those
    that were NaN (e.g. leaving out the only image of a class leaves one class). ``bias`` is the
    jackknife's bias estimate ``(n−1)(θ̄ − value)``, recorded, not subtracted.
    """

    value: float
    low: float
    high: float
    level: float
    se: float
    replicates: int
    dropped: int
    bias: float = math.nan
    method: str = METHOD

    def as_value(self) -> Value:
        """The value and its bounds as the engine's :class:`~kdx_engine.values.Value`, with the reason
        when the statistic (or only its interval) is undefined."""
        reason = None
        if not math.isfinite(self.value):
            reason = "undefined: a variance term is zero"
        elif not (math.isfinite(self.low) and math.isfinite(self.high)):
            reason = (f"interval undefined: {self.replicates} defined leave-one-out value(s) "
                      f"({self.dropped} undefined), at least 2 needed")
        return Value(self.value, self.low, self.high, reason)


def interval_from_replicates(value: float, replicates, level: float = LEVEL,
                             bounds: tuple[float, float] = (-math.inf, math.inf),
                             correct_bias: bool = False) -> Interval:
    """The jackknife interval of ``value`` from its n leave-one-out ``replicates`` (NaNs dropped),
    around ``value``, or around ``value − bias`` with ``correct_bias``."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    replicates = np.asarray(replicates, dtype=np.float64).reshape(-1)
    kept = replicates[np.isfinite(replicates)]
    dropped = int(replicates.size - kept.size)
    method = BIAS_CORRECTED_METHOD if correct_bias else METHOD
    if kept.size < 2 or not math.isfinite(value):
        return Interval(float(value), math.nan, math.nan, level, math.nan, int(kept.size), dropped, method=method)
    m = kept.size
    se = math.sqrt((m - 1) / m * float(np.sum((kept - kept.mean()) ** 2)))
    half = NormalDist().inv_cdf(0.5 + level / 2) * se
    bias = (m - 1) * (float(kept.mean()) - value)
    centre = value - bias if correct_bias else value
    low, high = max(centre - half, bounds[0]), min(centre + half, bounds[1])
    return Interval(float(value), float(low), float(high), level, se, m, dropped, bias, method)


def jackknife_interval(statistic: Callable[[np.ndarray], float], n: int, level: float = LEVEL,
                       bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """Jackknife interval of any ``statistic(indices)`` by n explicit recomputations (O(n) calls).

    ``statistic`` receives an int64 index array without repeats; ``statistic(arange(n))`` is the
    point value. The matrix statistics below use the O(n²) closed forms instead.
    """
    everything = np.arange(n)
    value = float(statistic(everything))
    replicates = [float(statistic(np.delete(everything, k))) for k in range(n)]
    return interval_from_replicates(value, replicates, level, bounds)


def _prepared(matrices: Sequence, centre: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    prepared = []
    for m in matrices:
        m = torch.as_tensor(m, dtype=torch.float64).detach()
        if m.dim() != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"expected an n×n matrix, got shape {tuple(m.shape)}")
        prepared.append(centre((m + m.T) / 2))
    if len({m.shape[0] for m in prepared}) > 1:
        raise ValueError(f"matrices of different sizes: {[m.shape[0] for m in prepared]}")
    return prepared


def _unit(matrix: torch.Tensor) -> torch.Tensor:
    largest = torch.linalg.vector_norm(matrix, ord=math.inf)
    return matrix / largest if bool(largest > 0) else matrix


def leave_one_out_u_inner(a_tilde: torch.Tensor, b_tilde: torch.Tensor) -> tuple[float, np.ndarray]:
    """⟨Ã, B̃⟩ of all n images and, for each k, of the n−1 images without k (re-U-centred).

    Inputs are the full sample's U-centred matrices (zero diagonal, zero row sums); needs n ≥ 5.
    """
    n = a_tilde.shape[0]
    products = a_tilde * b_tilde
    rows = products.sum(dim=1)
    total = rows.sum()
    full = total / (n * (n - 3))
    left_out = (total - 2 * rows * ((n - 2) / (n - 3))) / ((n - 1) * (n - 4))
    return float(full), left_out.numpy()


def leave_one_out_hsic(kc: torch.Tensor, lc: torch.Tensor) -> tuple[float, np.ndarray]:
    """tr(K H L H) of all n images and, for each k, of the n−1 without k (up to a common factor).

    Inputs are the full sample's double-centred Gram matrices (zero row sums, diagonal kept).
    """
    n = kc.shape[0]
    products = kc * lc
    rows = products.sum(dim=1)
    total = rows.sum()
    scale = n / (n - 1)
    left_out = total - 2 * scale * rows + scale**2 * torch.diagonal(kc) * torch.diagonal(lc)
    return float(total), left_out.numpy()


def _inner_products(matrices: list[torch.Tensor], inner) -> dict[tuple[int, int], np.ndarray]:
    """Leave-one-out inner products of every pair of matrices (symmetric keys both ways).

    Where a matrix's own product without image k is rounding noise of its full-sample value (it
    has no variance left, e.g. its only odd image was left out), its products are exactly 0 there.
    """
    products, vanished = {}, []
    for i in range(len(matrices)):
        full, left_out = inner(matrices[i], matrices[i])
        vanished.append(left_out <= RESIDUAL_TOLERANCE * full)
    for i in range(len(matrices)):
        for j in range(i, len(matrices)):
            left_out = inner(matrices[i], matrices[j])[1].copy()
            left_out[vanished[i] | vanished[j]] = 0.0
            products[(i, j)] = products[(j, i)] = left_out
    return products


def _cosine(ab, aa, bb):
    with np.errstate(invalid="ignore", divide="ignore"):
        return ab / np.sqrt(aa * bb)


def _residual(ii, ij, jj):
    """|P_{I|J}|² and whether J had any variance (else nothing is removed, Székely–Rizzo)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        removable = jj > 0
        squared = np.where(removable, ii - ij**2 / np.where(removable, jj, 1.0), ii)
    return np.where(squared <= RESIDUAL_TOLERANCE * ii, 0.0, squared), removable


def _r2_replicates(p):
    return _cosine(p[(0, 1)], p[(0, 0)], p[(1, 1)])


def _semi_partial_replicates(p):
    """sR²(X, G | Y) for matrices ordered (X, G, Y)."""
    x_residual, removable = _residual(p[(0, 0)], p[(0, 2)], p[(2, 2)])
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(removable, p[(0, 2)] / np.where(removable, p[(2, 2)], 1.0), 0.0)
        return (p[(0, 1)] - beta * p[(1, 2)]) / np.sqrt(x_residual * p[(1, 1)])


def _partial_replicates(p):
    """pdCor*(X, G; Y) for matrices ordered (X, G, Y)."""
    x_residual, removable = _residual(p[(0, 0)], p[(0, 2)], p[(2, 2)])
    g_residual, _ = _residual(p[(1, 1)], p[(1, 2)], p[(2, 2)])
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = np.where(removable, p[(0, 1)] - p[(0, 2)] * p[(1, 2)] / np.where(removable, p[(2, 2)], 1.0),
                         p[(0, 1)])
        return cross / np.sqrt(x_residual * g_residual)


def _distance_interval(point, replicates, matrices, level) -> Interval:
    """Interval of a statistic of U-centred distance matrices (R²* and its partial forms)."""
    centred = _prepared(matrices, lambda m: _unit(u_centre(m)))
    n = centred[0].shape[0]
    value = float(point(*centred))
    if n <= MIN_SAMPLES:  # a leave-one-out sample needs 4 images of its own
        return interval_from_replicates(value, [], level)
    return interval_from_replicates(value, replicates(_inner_products(centred, leave_one_out_u_inner)),
                                    level, (-1.0, 1.0))


@torch.no_grad()
def jackknife_r2_star(a, b, level: float = LEVEL) -> Interval:
    """R²*(X, Y) with its interval, from n×n distance matrices a (of X) and b (of Y)."""
    return _distance_interval(r2_star_centred, _r2_replicates, (a, b), level)


@torch.no_grad()
def jackknife_semi_partial_r2(a, g, b, level: float = LEVEL) -> Interval:
    """Semi-partial sR²(X, G | Y) with its interval, from distance matrices of X, G and Y."""
    return _distance_interval(semi_partial_r2_centred, _semi_partial_replicates, (a, g, b), level)


@torch.no_grad()
def jackknife_partial_r2(a, g, b, level: float = LEVEL) -> Interval:
    """Partial pdCor*(X, G; Y) with its interval, from distance matrices of X, G and Y."""
    return _distance_interval(partial_r2_centred, _partial_replicates, (a, g, b), level)


def _double_centre(gram: torch.Tensor) -> torch.Tensor:
    return gram - gram.mean(dim=0, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean()


@torch.no_grad()
def jackknife_linear_cka(kx, ky, level: float = LEVEL) -> Interval:
    """Linear CKA with its interval, from n×n Gram matrices of X and Y."""
    value = float(linear_cka_from_gram(kx, ky))
    kc, lc = _prepared((kx, ky), lambda m: _unit(_double_centre(m)))
    if kc.shape[0] < 3 or not math.isfinite(value):
        return interval_from_replicates(value, [], level, correct_bias=True)
    p = _inner_products([kc, lc], leave_one_out_hsic)
    return interval_from_replicates(value, _r2_replicates(p), level, (0.0, 1.0), correct_bias=True)


@torch.no_grad()
def jackknife_debiased_linear_cka(kx, ky, level: float = LEVEL) -> Interval:
    """Debiased linear CKA (U-centred HSIC) with its interval, from n×n Gram matrices of X and Y.

    The same closed form as R²*: the full sample's U-centred Gram matrices are valid inputs to the
    subsamples' U-centring. The estimator is unbiased in its HSIC terms, so the interval is centred
    on the estimate itself.
    """
    centred = _prepared((kx, ky), u_centred_gram)
    n = centred[0].shape[0]
    value = float(debiased_linear_cka_from_gram(kx, ky)) if n >= MIN_SAMPLES else math.nan
    if n <= MIN_SAMPLES or not math.isfinite(value):
        return interval_from_replicates(value, [], level)
    return interval_from_replicates(value, _r2_replicates(_inner_products(centred, leave_one_out_u_inner)),
                                    level, (-1.0, 1.0))
