"""Distance-correlation statistics as plain floats, NaN with a readable reason on degenerate input."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kdx_engine.stats.distance_correlation import (
    MIN_SAMPLES,
    distance_matrix,
    label_embedding,
    projection,
    r2_star_centred,
    u_centre,
    u_inner,
)
from kdx_engine.stats.gram import feature_rows

RELEVANCE_FORMS = ("semi-partial", "partial")


@dataclass(frozen=True)
class Estimate:
    """A statistic's value, or NaN and the reason it is undefined for this input."""

    value: float
    reason: str | None = None


def _undefined(reason: str) -> Estimate:
    return Estimate(math.nan, reason)


def _centred_inputs(inputs: dict[str, object]) -> tuple[list[torch.Tensor], str | None]:
    """U-centred distance matrices of the named feature sets, or the reason they are unusable."""
    rows = {name: feature_rows(features) for name, features in inputs.items()}
    sizes = {name: r.shape[0] for name, r in rows.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs must have the same number of samples, got {sizes}")
    n = next(iter(sizes.values()))
    if n < MIN_SAMPLES:
        return [], f"n = {n} samples: the bias-corrected estimators need at least {MIN_SAMPLES}"
    centred = []
    for name, r in rows.items():
        if not bool(torch.isfinite(r).all()):
            return [], f"{name}: contains NaN or infinite values"
        c = u_centre(distance_matrix(r))
        if u_inner(c, c) == 0:
            return [], _zero_variance_reason(name, r)
        centred.append(c)
    return centred, None


def _zero_variance_reason(name: str, rows: torch.Tensor) -> str:
    if bool((rows == rows[0]).all()):
        return f"{name}: constant features, all {rows.shape[0]} rows are identical (zero distance variance)"
    return f"{name}: zero distance variance, all pairwise distances are equal (e.g. every sample its own class)"


def _fully_explained(name: str, removed: str) -> str:
    return f"{name}: fully explained by {removed}, nothing remains once {removed}'s geometry is removed"


@torch.no_grad()
def _r2_star(inputs: dict[str, object]) -> Estimate:
    centred, reason = _centred_inputs(inputs)
    if reason:
        return _undefined(reason)
    return Estimate(float(r2_star_centred(*centred)))


@torch.no_grad()
def _partial(inputs: dict[str, object], form: str) -> Estimate:
    """Semi-partial or partial R² of inputs named (explained, target, removed), in that order."""
    centred, reason = _centred_inputs(inputs)
    if reason:
        return _undefined(reason)
    x_name, g_name, y_name = inputs
    a_tilde, g_tilde, b_tilde = centred
    x_residual = projection(a_tilde, b_tilde)
    if u_inner(x_residual, x_residual) == 0:
        return _undefined(_fully_explained(x_name, y_name))
    if form == "semi-partial":
        return Estimate(float(r2_star_centred(x_residual, g_tilde)))
    g_residual = projection(g_tilde, b_tilde)
    if u_inner(g_residual, g_residual) == 0:
        return _undefined(_fully_explained(g_name, y_name))
    return Estimate(float(r2_star_centred(x_residual, g_residual)))


def r2_star_estimate(x, y) -> Estimate:
    """R²*(X, Y) of n×… features (arrays or tensors) as an Estimate."""
    return _r2_star({"X": x, "Y": y})


def semi_partial_r2_estimate(x, g, y) -> Estimate:
    """Semi-partial sR²(X, G | Y) as an Estimate."""
    return _partial({"X": x, "G": g, "Y": y}, "semi-partial")


def partial_r2_estimate(x, g, y) -> Estimate:
    """Partial pdCor*(X, G; Y) as an Estimate."""
    return _partial({"X": x, "G": g, "Y": y}, "partial")


def relevance_estimate(
    features,
    labels,
    removed=None,
    form: str = "semi-partial",
    num_classes: int | None = None,
    class_embeddings=None,
) -> Estimate:
    """Relevance score RS = R²*(F, G) with G the label embedding (METHODS §3).

    With ``removed`` (another model's features) it is the partial relevance RS(F | removed) in the
    given ``form``: "semi-partial" (the authors' "partial") or "partial" (Székely–Rizzo).
    """
    if form not in RELEVANCE_FORMS:
        raise ValueError(f"form must be one of {RELEVANCE_FORMS}, got {form!r}")
    labels = np.asarray(labels).reshape(-1)
    classes = np.unique(labels)
    if len(classes) == 1:
        return _undefined(f"one class only: all {len(labels)} labels are {classes[0]}, relevance needs two or more")
    embedding = label_embedding(labels, num_classes, class_embeddings)
    if removed is None:
        return _r2_star({"features": features, "labels": embedding})
    return _partial({"features": features, "labels": embedding, "removed model's features": removed}, form)
