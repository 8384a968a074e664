"""Bias-corrected distance correlation and its partial forms (METHODS §1), in float64 torch.

Every function is differentiable with autograd (UniCAM backpropagates through them). Functions
named ``…_centred`` take U-centred matrices, so callers that cache them can reuse them.
"""
from __future__ import annotations

import math

import torch

from kdx_engine.stats.gram import feature_rows, gram_matrix

EPSILON = 1e-18  # relative to the largest squared distance: scale-free (absolute where all are zero)
MIN_SAMPLES = 4
# A U-centred matrix (or a projection residual) whose entries all lie below this fraction of its
# source's largest entry is rounding noise of an exact zero (all rows equal, all distances equal,
# X's geometry a multiple of Y's).
ROUNDING_TOLERANCE = 1e-12


def distance_matrix_from_gram(gram) -> torch.Tensor:
    """n×n Euclidean distances sqrt(max(‖F_i‖²+‖F_j‖²−2⟨F_i,F_j⟩, 0) + ε) from a Gram matrix.

    ε = ``EPSILON`` × the largest squared distance (a constant of the data, no gradient), so scaling
    the features scales every distance exactly; the diagonal is exactly sqrt(ε). ε keeps gradients
    finite where distances are zero.
    """
    gram = torch.as_tensor(gram, dtype=torch.float64)
    squared_norms = torch.diagonal(gram)
    squared = (squared_norms[:, None] + squared_norms[None, :]).sub_(gram, alpha=2).clamp_min_(0)
    squared.diagonal().zero_()
    largest = float(squared.detach().max()) if squared.numel() else 0.0
    return squared.add_(EPSILON * largest if largest > 0 else EPSILON).sqrt_()


def distance_matrix(features) -> torch.Tensor:
    """n×n float64 Euclidean distances between the rows of n×… features, via the Gram matrix."""
    return distance_matrix_from_gram(gram_matrix(features))


def u_centre(a: torch.Tensor) -> torch.Tensor:
    """U-centred n×n matrix (METHODS §1.2) of a distance matrix; needs n ≥ 4; diagonal 0.

    The diagonal of ``a`` is ignored (it holds only ε). When every entry of the result is rounding
    noise (constant features, all labels equal, all distances equal), it is exactly zero, so the
    variance terms vanish exactly and the correlations become NaN rather than noise.
    """
    n = a.shape[0]
    if n < MIN_SAMPLES:
        raise ValueError(f"U-centring needs at least {MIN_SAMPLES} samples, got {n}")
    a = a.to(torch.float64)
    diagonal = torch.diagonal(a)
    row_sums = a.sum(dim=1) - diagonal
    column_sums = a.sum(dim=0) - diagonal
    total = row_sums.sum()
    # Ã_ij = a_ij − (r_i + c_j − g/(n−1)) / (n−2), the METHODS §1.2 formula regrouped
    offsets = (row_sums[:, None] + (column_sums - total / (n - 1))[None, :]).div_(n - 2)
    centred = a - offsets
    centred.diagonal().zero_()
    return zero_if_rounding_noise(centred, a)


def zero_if_rounding_noise(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``result``, or exactly zero (still on the autograd graph) when all of it is rounding noise
    relative to ``source``, the matrix it was computed from."""
    largest = torch.linalg.vector_norm(result.detach(), ord=math.inf)
    if bool(largest <= ROUNDING_TOLERANCE * torch.linalg.vector_norm(source.detach(), ord=math.inf)):
        return result * 0
    return result


def u_inner(a_tilde: torch.Tensor, b_tilde: torch.Tensor) -> torch.Tensor:
    """⟨Ã, B̃⟩ = Σ_{i≠j} Ã_ij B̃_ij / (n(n−3)) for U-centred matrices (zero diagonal)."""
    n = a_tilde.shape[0]
    return torch.dot(a_tilde.reshape(-1), b_tilde.reshape(-1)) / (n * (n - 3))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨A, B⟩ / (|A|·|B|); NaN when either norm is 0."""
    return u_inner(a, b) / torch.sqrt(u_inner(a, a) * u_inner(b, b))


def r2_star_centred(a_tilde: torch.Tensor, b_tilde: torch.Tensor) -> torch.Tensor:
    """Bias-corrected squared distance correlation from U-centred matrices; NaN if a variance is 0."""
    return _cosine(a_tilde, b_tilde)


def r2_star(x, y) -> torch.Tensor:
    """Bias-corrected squared distance correlation R²*(X, Y) of n×… features; in [−1, 1]."""
    return r2_star_centred(u_centre(distance_matrix(x)), u_centre(distance_matrix(y)))


def projection(a_tilde: torch.Tensor, b_tilde: torch.Tensor) -> torch.Tensor:
    """P_{X|Y} = Ã − (⟨Ã,B̃⟩/⟨B̃,B̃⟩)·B̃: X's U-centred geometry with Y's removed.

    When ⟨B̃,B̃⟩ = 0 there is nothing to remove and Ã is returned (Székely and Rizzo 2014). When Ã is
    a multiple of B̃ (X = c·Y, a rotation of Y), the residual is exactly zero, not rounding noise.
    """
    b_variance = u_inner(b_tilde, b_tilde)
    safe_variance = torch.where(b_variance > 0, b_variance, torch.ones_like(b_variance))
    residual = a_tilde - (u_inner(a_tilde, b_tilde) / safe_variance) * b_tilde
    return zero_if_rounding_noise(residual, a_tilde)


def semi_partial_r2_centred(a_tilde: torch.Tensor, g_tilde: torch.Tensor, b_tilde: torch.Tensor) -> torch.Tensor:
    """Semi-partial sR²(X, G | Y) = ⟨P_{X|Y}, G̃⟩ / (|P_{X|Y}|·|G̃|) from U-centred matrices."""
    return _cosine(projection(a_tilde, b_tilde), g_tilde)


def partial_r2_centred(a_tilde: torch.Tensor, g_tilde: torch.Tensor, b_tilde: torch.Tensor) -> torch.Tensor:
    """Partial distance correlation pdCor*(X, G; Y) (Székely–Rizzo) from U-centred matrices."""
    return _cosine(projection(a_tilde, b_tilde), projection(g_tilde, b_tilde))


def semi_partial_r2(x, g, y) -> torch.Tensor:
    """Semi-partial sR²(X, G | Y) of features: Y's geometry removed from X only (METHODS §1.6)."""
    return semi_partial_r2_centred(*(u_centre(distance_matrix(f)) for f in (x, g, y)))


def partial_r2(x, g, y) -> torch.Tensor:
    """Partial distance correlation pdCor*(X, G; Y) of features: Y removed from X and from G."""
    return partial_r2_centred(*(u_centre(distance_matrix(f)) for f in (x, g, y)))


def _double_centre(a: torch.Tensor) -> torch.Tensor:
    return a - a.mean(dim=1, keepdim=True) - a.mean(dim=0, keepdim=True) + a.mean()


def _v_distance_matrix(features, normalise_rows: bool) -> torch.Tensor:
    """Distances with ε's offset removed, so that equal rows are exactly 0 apart (diagonal included)."""
    rows = feature_rows(features)
    if normalise_rows:
        rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    distances = distance_matrix(rows)
    return distances - distances.diagonal()[0]  # the diagonal holds exactly sqrt(ε)


def v_dcor2(x, y, normalise_rows: bool = False) -> torch.Tensor:
    """V-statistic dCor² (double centring with plain means), optionally of L2-normalised rows.

    Kept only to compare with the authors' later code, never the default: it is biased towards 1
    when d ≫ n (independent Gaussian features with n = 50, d = 1000 give ≈ 0.99).
    """
    a = _double_centre(_v_distance_matrix(x, normalise_rows))
    b = _double_centre(_v_distance_matrix(y, normalise_rows))
    return (a * b).mean() / torch.sqrt((a * a).mean() * (b * b).mean())


def label_embedding(labels, num_classes: int | None = None, class_embeddings=None) -> torch.Tensor:
    """n×K float64 one-hot rows of integer labels, or rows of a K×e ``class_embeddings`` matrix.

    ``num_classes`` defaults to the number of embedding rows, else to the largest label + 1.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = labels.to(torch.int64)
    if class_embeddings is not None:
        class_embeddings = torch.as_tensor(class_embeddings, dtype=torch.float64)
        if class_embeddings.dim() != 2:
            raise ValueError(f"class embeddings must be a K×e matrix, got shape {tuple(class_embeddings.shape)}")
        if num_classes is None:
            num_classes = class_embeddings.shape[0]
        if class_embeddings.shape[0] != num_classes:
            raise ValueError(f"{class_embeddings.shape[0]} class embeddings for {num_classes} classes")
    elif num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.numel() else 0
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}")
    if class_embeddings is not None:
        return class_embeddings[labels]
    return torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)
