"""Linear CKA (Kornblith et al. 2019), the familiar comparator shown beside FSS, in two estimators.

- **linear CKA** (``linear_cka``): the plug-in estimator, HSIC from double-centred Gram matrices
  (a V-statistic). Biased upwards by O(1/n): at n = 64, d = 10 its mean is 0.50 for a population 0.43,
  and independent features give clearly positive values.
- **debiased linear CKA** (``debiased_linear_cka``): the unbiased HSIC estimator of Song et al. (2012),
  HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)) with K̃ the Gram matrix
  with its diagonal zeroed, in the CKA ratio HSIC₁(K,L)/sqrt(HSIC₁(K,K)·HSIC₁(L,L)), as in Nguyen,
  Raghu and Kornblith (2021). HSIC₁(K, L) equals the U-centred inner product ⟨K̃_U, L̃_U⟩ of METHODS
  §1.2–§1.3 applied to Gram matrices instead of distances, so it shares R²*'s code. Its population
  value is the same linear CKA; it is ≈ 0 in expectation for independent features and lies in
  [−1, 1] (it may be slightly negative). Needs n ≥ 4.
"""
from __future__ import annotations

import math

import torch

from kdx_engine.stats.distance_correlation import u_centre, zero_if_rounding_noise
from kdx_engine.stats.gram import feature_rows


def _unit_scaled(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` divided by its largest absolute entry (CKA is scale-free; this keeps the sums of
    squares away from underflow and overflow), or unchanged when it is zero."""
    largest = torch.linalg.vector_norm(matrix.detach(), ord=math.inf)
    return matrix / largest if bool(largest > 0) else matrix


def _double_centre(gram: torch.Tensor) -> torch.Tensor:
    """H K H with H = I − 11ᵀ/n: the Gram matrix of column-centred features, exactly zero when the
    features are constant."""
    centred = gram - gram.mean(dim=0, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean()
    return zero_if_rounding_noise(centred, gram)


def linear_cka_from_gram(kx, ky) -> torch.Tensor:
    """Linear CKA from n×n Gram matrices XXᵀ and YYᵀ; in [0, 1], NaN when either side is constant."""
    kx = _unit_scaled(_double_centre(torch.as_tensor(kx, dtype=torch.float64)))
    ky = _unit_scaled(_double_centre(torch.as_tensor(ky, dtype=torch.float64)))
    return (kx * ky).sum() / torch.sqrt((kx * kx).sum() * (ky * ky).sum())


def _centred_gram(features) -> torch.Tensor:
    rows = feature_rows(features)
    centred = _unit_scaled(zero_if_rounding_noise(rows - rows.mean(dim=0, keepdim=True), rows))
    return centred @ centred.T


def u_centred_gram(gram) -> torch.Tensor:
    """The U-centred n×n Gram matrix (diagonal ignored, then 0), scaled to a largest entry of 1.

    The Gram matrix is double-centred first: that adds u_i + u_j to it, which U-centring removes
    exactly, and it keeps the precision of features with a large mean.
    """
    return _unit_scaled(u_centre(_double_centre(torch.as_tensor(gram, dtype=torch.float64))))


def debiased_linear_cka_from_gram(kx, ky) -> torch.Tensor:
    """Debiased linear CKA (U-centred HSIC, Song et al. 2012) from n×n Gram matrices XXᵀ and YYᵀ;
    in [−1, 1], NaN when either side is constant; needs n ≥ 4."""
    kx, ky = u_centred_gram(kx), u_centred_gram(ky)
    return (kx * ky).sum() / torch.sqrt((kx * kx).sum() * (ky * ky).sum())


def debiased_linear_cka(x, y) -> torch.Tensor:
    """Debiased linear CKA of n×… features (n ≥ 4), via n×n Gram matrices of column-centred rows."""
    return debiased_linear_cka_from_gram(_centred_gram(x), _centred_gram(y))


def linear_cka(x, y) -> torch.Tensor:
    """Linear CKA of n×… features, via n×n Gram matrices so that d ≫ n costs O(n²·d), not O(d²).

    The features are column-centred before the Gram matrix is formed, which keeps the precision
    of features with a large mean (ReLU outputs).
    """
    return linear_cka_from_gram(_centred_gram(x), _centred_gram(y))
