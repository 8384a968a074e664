"""Delete-one jackknife intervals for dataset metrics (METHODS §1: never resample with replacement).

Each replicate leaves one image out: its row and column are dropped from the n×n distance (or Gram)
matrices and the rest is re-centred; no image is ever held twice and no new forward pass is needed.
The jackknife variance is ``v_J = (n−1)/n · Σ_k (θ_(k) − θ̄)²``.

R²*, its partial forms and debiased linear CKA (U-centred inner products, the CKA dataset metrics
report) get ``U_STATISTIC_METHOD``, three steps on top of v_J, each measured by
``benchmarks/interval_coverage.py``:

1. **The jackknife's degenerate excess is removed.** The inner products are (close to) U-statistics of
   order 2 in the images with kernel ``h_ij ∝ Ã_ij·B̃_ij``. Writing h = θ + a_i + a_j + g_ij (Hoeffding),
   Var(U) = 4ζ₁/n + 2ψ/(n(n−1)) with ζ₁ = Var a, ψ = Var g, while E v_J = 4ζ₁/n + 4ψ/(n(n−2))
   (Efron–Stein): the degenerate part is counted about twice. Where it dominates (independent features,
   d ≫ n) the plain jackknife interval is √2 too wide (coverage 0.99, 1.44× the ideal width). ψ is
   estimated without bias by ``⟨H̃, H̃⟩`` for H the statistic's linearised kernel (gradient of the
   statistic in its inner products times the product matrices) U-centred, so
   ``v = max(v_J − 2ψ̂/((n−1)(n−2)), 2ψ̂/(n(n−1)))``: the floor is the degenerate part of Var(U)
   itself, since the first-order part ζ₁ cannot be negative.
2. **A t quantile** with Satterthwaite's degrees of freedom ``ν = min(n−1, 2n(v/v_J)²/(κ−1))``, κ the
   kurtosis of the leave-one-out values (the relative variance of v_J is (κ−1)/n).
3. **A variance-stabilised interval.** The first-order part grows with the statistic (for a degenerate
   U-statistic under local alternatives the limit is a non-central χ², whose variance is linear in its
   mean) and the variance vanishes at the upper bound 1, so the model is
   ``v(θ) ∝ (v_deg + b·max(θ, 0))·(1 − θ)²`` with v_deg = 2ψ̂/(n(n−1)), fitted to v at θ̂ with
   ``b = (v − v_deg) / max(θ̂, t·√v)`` (the slope is only read off where θ̂ stands clear of 0). The
   interval is ``g⁻¹(g(θ̂) ± t)`` for ``g = ∫ v(θ)^(−1/2) dθ`` (closed form: an atanh of a square root,
   a logarithm below 0), clipped to [−1, 1]. Far from 0 and 1 it is θ̂ ± t·√v; near 0 it reaches up
   further than down, which the plain normal interval did not (R²* at d = 1: its low estimates have
   small standard errors; coverage 0.92 before).

The plain linear CKA estimator is biased upwards by O(1/n) (0.07 at n = 64, d = 10: two standard
errors), so its interval is the normal jackknife interval centred on the jackknife's bias-corrected
estimate ``value − bias`` while ``value`` stays the plain CKA; even so it covered only 0.90 there.
``jackknife_interval`` (any statistic of the images) is the normal interval ``θ̂ ± z·√v_J``.

All n replicates cost O(n²) together, about one evaluation of the statistic: U-centring is invariant
to adding ``u_i + u_j`` to a symmetric matrix, so the full-sample Ã is a valid input to the
subsample's U-centring, and since Ã's row sums are zero, the inner product of the subsample without
image k follows from ``S = Σ Ã∘B̃`` and the k-th row sum of Ã∘B̃ alone (the same holds for the
U-centred Gram matrices of debiased CKA, and in a similar form for the double centring of linear CKA).
ψ̂ costs one more U-centring of an n×n matrix.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from kdx_engine.stats.student_t import student_t_quantile
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
U_STATISTIC_METHOD = ("delete-one jackknife without its degenerate excess, variance-stabilised, "
                      "t (Satterthwaite)")
# A projection residual whose squared norm is below this fraction of its source's is treated as
# exactly zero (X's geometry a multiple of Y's); the subtractive formula leaves ~1e-16 of noise.
RESIDUAL_TOLERANCE = 1e-9
LAST_BELOW_ONE = 1.0 - 2.0**-53


@dataclass(frozen=True)
class Interval:
    """A statistic on all n images and its delete-one jackknife interval (see the module docstring).

    ``replicates`` counts the leave-one-out values that entered the standard error; ``dropped`` those
    that were NaN (e.g. leaving out the only image of a class leaves one class). ``bias`` is the
    jackknife's bias estimate ``(n−1)(θ̄ − value)``, recorded, not subtracted. ``se`` is the standard
    error the interval uses, ``jackknife_se`` the plain √v_J (equal but for ``U_STATISTIC_METHOD``),
    ``degrees_of_freedom`` those of its t quantile (∞: normal).
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
    jackknife_se: float = math.nan
    degrees_of_freedom: float = math.inf

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
    return Interval(float(value), float(low), float(high), level, se, m, dropped, bias, method, se)


def _stabilised_bounds(value: float, variance: float, degenerate: float, quantile: float) -> tuple[float, float]:
    """g⁻¹(g(θ̂) ± t) for g = ∫ v(θ)^(−1/2) dθ, v(θ) = κ·(v_deg + b·max(θ, 0))·(1 − θ)² (module docstring).

    Needs 0 < v_deg ≤ v and θ̂ < 1.
    """
    first_order = variance - degenerate
    slope = first_order / max(value, quantile * math.sqrt(variance)) if first_order > 0 else 0.0
    if slope <= 1e-6 * degenerate:  # no first-order growth to speak of (and atanh's argument stays < 1)
        slope = 0.0
    scale = math.sqrt(variance / ((degenerate + slope * max(value, 0.0)) * (1.0 - value) ** 2))
    root_degenerate = math.sqrt(degenerate)

    def below_zero(theta):  # g on θ ≤ 0, and everywhere when b = 0
        return -math.log1p(-theta) / (scale * root_degenerate)

    if slope > 0:
        top = math.sqrt(degenerate + slope)
        start = math.atanh(root_degenerate / top)

        def g(theta):
            if theta <= 0:
                return below_zero(theta)
            ratio = min(math.sqrt(degenerate + slope * theta) / top, LAST_BELOW_ONE)
            return 2.0 / (top * scale) * (math.atanh(ratio) - start)

        def inverse(y):
            if y <= 0:
                return -math.expm1(-y * scale * root_degenerate)
            root = top * math.tanh(y * top * scale / 2.0 + start)
            return (root * root - degenerate) / slope
    else:
        g = below_zero

        def inverse(y):
            return -math.expm1(-y * scale * root_degenerate)

    centre = g(value)
    return inverse(centre - quantile), inverse(centre + quantile)


def u_statistic_interval(value: float, replicates, psi: float, n: int,
                         level: float = LEVEL, bounds: tuple[float, float] = (-1.0, 1.0)) -> Interval:
    """The ``U_STATISTIC_METHOD`` interval of a statistic of U-centred inner products (module docstring)
    from its n leave-one-out ``replicates`` (NaNs dropped) and ψ̂, the variance of the degenerate
    part of its linearised kernel. Without a usable ψ̂ (not finite or ≤ 0) v_J is used as it is."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    replicates = np.asarray(replicates, dtype=np.float64).reshape(-1)
    kept = replicates[np.isfinite(replicates)]
    dropped = int(replicates.size - kept.size)
    if kept.size < 2 or not math.isfinite(value):
        return Interval(float(value), math.nan, math.nan, level, math.nan, int(kept.size), dropped,
                        method=U_STATISTIC_METHOD)
    m = kept.size
    deviations = kept - kept.mean()
    squares = float(np.sum(deviations**2))
    jackknife_variance = (m - 1) / m * squares
    bias = (m - 1) * (float(kept.mean()) - value)
    psi = float(psi)
    usable = math.isfinite(psi) and psi > 0
    degenerate = 2 * psi / (n * (n - 1)) if usable else 0.0
    variance = max(jackknife_variance - 2 * psi / ((n - 1) * (n - 2)), degenerate) if usable else jackknife_variance
    if squares > 0:
        kurtosis = m * float(np.sum(deviations**4)) / squares**2
        satterthwaite = 2 * m * (variance / jackknife_variance) ** 2 / max(kurtosis - 1, 1e-12)
        df = min(m - 1.0, satterthwaite)
    else:
        df = m - 1.0
    quantile = student_t_quantile(0.5 + level / 2, df)
    se = math.sqrt(variance)
    if usable and variance > 0 and value < 1 - 1e-9:
        low, high = _stabilised_bounds(value, variance, degenerate, quantile)
    else:
        low, high = value - quantile * se, value + quantile * se
    low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(float(value), float(low), float(high), level, se, m, dropped, bias, U_STATISTIC_METHOD,
                    math.sqrt(jackknife_variance), df)


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


def _inner_products(matrices: list[torch.Tensor], inner) -> tuple[dict, dict]:
    """Full-sample and leave-one-out inner products of every pair of matrices (symmetric keys both ways).

    Where a matrix's own product without image k is rounding noise of its full-sample value (it
    has no variance left, e.g. its only odd image was left out), its products are exactly 0 there.
    """
    full, products, vanished = {}, {}, []
    for i in range(len(matrices)):
        whole, left_out = inner(matrices[i], matrices[i])
        vanished.append(left_out <= RESIDUAL_TOLERANCE * whole)
    for i in range(len(matrices)):
        for j in range(i, len(matrices)):
            whole, left_out = inner(matrices[i], matrices[j])
            left_out = left_out.copy()
            left_out[vanished[i] | vanished[j]] = 0.0
            products[(i, j)] = products[(j, i)] = left_out
            full[(i, j)] = full[(j, i)] = whole
    return full, products


def degenerate_kernel_variance(matrices: list[torch.Tensor], statistic, full: dict) -> float:
    """ψ̂ = ⟨H̃, H̃⟩: the variance of the degenerate (second-order) part of the statistic's kernel.

    ``matrices`` are the full sample's U-centred matrices, ``statistic`` maps a dict of inner
    products (keys both ways, as ``_inner_products``) to the statistic, ``full`` holds them on all n
    images. H = c·Σ_{i≤j} ∂θ/∂S_ij · M_i∘M_j (central differences), c = (n−2)²/((n−3)(n−4)) makes H
    the kernel of an order-2 U-statistic whose jackknife equals the closed form's; H̃ is H U-centred.
    """
    n = matrices[0].shape[0]
    keys = [(i, j) for i in range(len(matrices)) for j in range(i, len(matrices))]

    def at(shifted):
        values = {}
        for (i, j) in keys:
            values[(i, j)] = values[(j, i)] = np.array([full[(i, j)] + shifted.get((i, j), 0.0)])
        return float(statistic(values)[0])

    kernel = torch.zeros_like(matrices[0])
    for (i, j) in keys:
        step = 1e-6 * math.sqrt(abs(full[(i, i)] * full[(j, j)])) or 1e-12
        derivative = (at({(i, j): step}) - at({(i, j): -step})) / (2 * step)
        if not math.isfinite(derivative):
            return math.nan
        kernel += derivative * (matrices[i] * matrices[j])
    kernel *= (n - 2) ** 2 / ((n - 3) * (n - 4))
    centred = u_centre(kernel)
    return float((centred * centred).sum() / (n * (n - 3)))


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
        return u_statistic_interval(value, [], math.nan, n, level)
    return _u_interval(value, centred, replicates, level)


def _u_interval(value: float, centred: list[torch.Tensor], statistic, level: float) -> Interval:
    full, left_out = _inner_products(centred, leave_one_out_u_inner)
    psi = degenerate_kernel_variance(centred, statistic, full) if math.isfinite(value) else math.nan
    return u_statistic_interval(value, statistic(left_out), psi, centred[0].shape[0], level)


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
    _, p = _inner_products([kc, lc], leave_one_out_hsic)
    return interval_from_replicates(value, _r2_replicates(p), level, (0.0, 1.0), correct_bias=True)


@torch.no_grad()
def jackknife_debiased_linear_cka(kx, ky, level: float = LEVEL) -> Interval:
    """Debiased linear CKA (U-centred HSIC) with its interval, from n×n Gram matrices of X and Y.

    The same closed form and interval as R²*: the full sample's U-centred Gram matrices are valid
    inputs to the subsamples' U-centring.
    """
    centred = _prepared((kx, ky), u_centred_gram)
    n = centred[0].shape[0]
    value = float(debiased_linear_cka_from_gram(kx, ky)) if n >= MIN_SAMPLES else math.nan
    if n <= MIN_SAMPLES or not math.isfinite(value):
        return u_statistic_interval(value, [], math.nan, n, level)
    return _u_interval(value, centred, _r2_replicates, level)
