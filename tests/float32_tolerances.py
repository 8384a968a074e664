"""Tolerances for comparing two float32 computations of the same quantity (issue 30).

Two float32 paths (PyTorch vs onnxruntime, a batch vs one image, oneDNN vs the reference kernels, one
thread vs several) sum in different orders, so each rounds differently: their results differ by a few
units of float32's rounding step EPS32 = 2⁻²³ ≈ 1.2e-7 *relative to the magnitude of the terms summed*,
times a growth factor for the number of accumulations and for cancellation. A comparison between two such
paths therefore needs a tolerance of that size relative to the compared quantity, not an absolute 1e-6
that only holds on the machine it was measured on. Every tolerance here stays far below what a real bug
(a wrong layer, a wrong normalisation, a wrong target) gives: errors of 1e-2 or more.
"""
from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7

# A network's output, or a map made of its activations and gradients, passes through tens of layers of
# accumulations (a 3×3 conv over C channels sums 9C ≈ 10³ products); the rounding of different kernels
# and summation orders then differs by up to about √(depth · fan-in) · EPS32 ≈ 10²·EPS32 relative to the
# activations' scale, and the sums that form a map cancel down to ~10× less than their terms. 2¹⁰·EPS32 ≈
# 1.2e-4 relative to the quantity's scale covers both with room (measured with one, two and three threads,
# oneDNN on and off: ≤ 1e-5 relative on the scan's maps against compare_image's, ≤ 1.1e-6 on penultimate
# features across batch sizes), yet is 100× below a 1e-2 bug.
NETWORK_RTOL = 2 ** 10 * EPS32


def network_atol(*arrays) -> float:
    """``NETWORK_RTOL`` times the largest finite magnitude in ``arrays``: the absolute tolerance for values
    computed through a network in float32 on two paths."""
    largest = max((float(np.nanmax(np.abs(np.asarray(a, dtype=np.float64)))) for a in arrays
                   if np.isfinite(np.asarray(a, dtype=np.float64)).any()), default=0.0)
    return NETWORK_RTOL * largest


def pearson_tolerance(a, a_other, b, b_other) -> float:
    """How far r(a, b) and r(a_other, b_other) may part when a_other, b_other are a, b computed on another
    float32 path. r's gradient with respect to a is (b̂ − r·â)/‖a − ā‖, of norm √(1 − r²)/‖a − ā‖ ≤
    1/‖a − ā‖, so |Δr| ≤ ‖Δa‖/‖a − ā‖ + ‖Δb‖/‖b − b̄‖ to first order: the maps' own relative difference
    (twice that bound, plus 1e-9 for the float64 sums of the correlation itself). Pixels that are NaN in
    any map (outside a model's crop) are left out. The maps themselves are compared separately, so this
    tolerance cannot grow with a bug in them."""
    arrays = [np.asarray(x, dtype=np.float64).ravel() for x in (a, a_other, b, b_other)]
    seen = np.logical_and.reduce([np.isfinite(x) for x in arrays])
    a, a_other, b, b_other = (x[seen] for x in arrays)
    if a.size == 0:
        return 0.0

    def relative(x, y):
        spread = np.linalg.norm(x - x.mean())
        return np.linalg.norm(x - y) / spread if spread > 0 else 0.0

    return 2 * (relative(a, a_other) + relative(b, b_other)) + 1e-9


# Quantities that are smooth functions of a model's logits z with derivatives of order one (probabilities,
# KL in nats, deletion/insertion AUCs of probabilities): |Δ| ≲ max|Δz| ≤ NETWORK_RTOL·max|z|, and the demo
# models' logits stay within ±8 (their log-probabilities span ≤ 15), so 8·NETWORK_RTOL ≈ 1e-3 absolute.
# Measured: ≤ 7e-7 across batch sizes on one path, but 4.3e-5 on a deletion AUC between Ray's actors
# (oneDNN on) and an in-process scan with one thread and oneDNN off: oneDNN picks other convolution
# algorithms for other batch sizes and thread counts. A wrong target or softmax moves these by ≥ 1e-2.
PROBABILITY_ATOL = 8 * NETWORK_RTOL


def _seen(*maps):
    arrays = [np.asarray(x, dtype=np.float64).ravel() for x in maps]
    seen = np.logical_and.reduce([np.isfinite(x) for x in arrays])
    return [x[seen] for x in arrays]


def spearman_tolerance(a, a_other, b, b_other) -> float:
    """Spearman's ρ is Pearson's r of the ranks, so it may part by ``pearson_tolerance`` of the ranks of
    the two versions of each map: near-ties that float32 rounding reorders show up there."""
    from kdx_engine.cams.map_comparison import average_ranks

    return pearson_tolerance(*(average_ranks(x) for x in _seen(a, a_other, b, b_other)))


def top_iou_tolerance(a, a_other, b, b_other, fraction: float = 0.2) -> float:
    """IoU = I/(2k − I) of two k-pixel top regions moves by at most 2/k per pixel of I, and I by at most the
    pixels that leave each top region between the two versions of its map (near-ties at the threshold)."""
    from kdx_engine.cams.map_comparison import top_pixels

    a, a_other, b, b_other = _seen(a, a_other, b, b_other)
    if a.size == 0:
        return 0.0
    k = min(a.size, max(1, int(np.floor(fraction * a.size + 0.5))))
    moved = sum(k - np.intersect1d(top_pixels(x, k), top_pixels(y, k)).size for x, y in ((a, a_other), (b, b_other)))
    return 2 * moved / k + 1e-12


def energy_tolerance(saliency, saliency_other) -> float:
    """The share Σ_inside m⁺ / Σ m⁺ moves by at most 2‖Δm⁺‖₁ / Σ m⁺."""
    m, m_other = (np.clip(x, 0, None) for x in _seen(saliency, saliency_other))
    total = m.sum()
    return 2 * float(np.abs(m - m_other).sum()) / total + 1e-12 if total > 0 else 0.0


def pearson_tolerance_within(a, b, rtol: float = NETWORK_RTOL) -> float:
    """``pearson_tolerance`` when only one version of the maps is at hand and the other is known to lie
    within ``rtol`` of each map's magnitude pixel by pixel: ‖Δa‖/‖a − ā‖ ≤ rtol · max|a| / std(a)."""
    a, b = _seen(a, b)
    if a.size == 0 or a.std() == 0 or b.std() == 0:
        return 1e-9
    return 2 * rtol * (np.abs(a).max() / a.std() + np.abs(b).max() / b.std()) + 1e-9


def normalised_map_atol(raw_maps) -> float:
    """The tolerance for maps min–max normalised to [0, 1] (``Explanation.normalised``) from ``raw_maps``
    (N×H×W) when the other side is another float32 implementation, pytorch-grad-cam's among them: the raw
    maps' rounding, NETWORK_RTOL of their magnitude, is divided by the span R of the smallest-span map;
    and grad-cam min–max scales twice, adding its ε = 1e-7 once on the raw scale, which parts the two
    conventions by up to ε/R (measured: 0.995 ε/R on a HiResCAM map with R = 2.3e-3)."""
    raw = np.asarray(raw_maps.detach() if hasattr(raw_maps, "detach") else raw_maps, dtype=np.float64)
    flat = raw.reshape(raw.shape[0], -1)
    span = (flat.max(axis=1) - flat.min(axis=1)).min()
    return (2 * 1e-7 + NETWORK_RTOL * np.abs(flat).max()) / span


# R²*, partial R²* and CKA of float32 features taken on two paths (the metric's batches of 10 vs one batch
# of 36): the features differ by a few EPS32 relative, and these scale-free ratios of sums of centred
# distance products move by a small multiple of that (measured: 1.1e-7 ≈ EPS32, with one thread and oneDNN
# off; 0 on the default path, where the former 1e-9 held). 2⁷·EPS32 ≈ 1.5e-5 leaves room for the
# conditioning of the partial forms and stays far under a centring or bias-correction bug (≥ 1e-2 at n = 36).
STATISTIC_ATOL = 2 ** 7 * EPS32
