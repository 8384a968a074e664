"""Linear CKA (Kornblith et al. 2019), the familiar comparator shown beside FSS."""
from __future__ import annotations

import math

import torch

from kdx_engine.stats.distance_correlation import zero_if_rounding_noise
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


def linear_cka(x, y) -> torch.Tensor:
    """Linear CKA of n×… features, via n×n Gram matrices so that d ≫ n costs O(n²·d), not O(d²).

    The features are column-centred before the Gram matrix is formed, which keeps the precision
    of features with a large mean (ReLU outputs).
    """
    grams = []
    for features in (x, y):
        rows = feature_rows(features)
        centred = _unit_scaled(zero_if_rounding_noise(rows - rows.mean(dim=0, keepdim=True), rows))
        grams.append(centred @ centred.T)
    return linear_cka_from_gram(*grams)
