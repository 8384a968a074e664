"""Degenerate input gives NaN with a readable reason, never a silent 0."""
import math

import numpy as np
import pytest

from kdx_engine.stats import (
    Estimate,
    label_embedding,
    partial_r2,
    partial_r2_estimate,
    r2_star,
    r2_star_estimate,
    relevance_estimate,
    semi_partial_r2,
    semi_partial_r2_estimate,
)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((20, 6))
Y = X[:, :3] + RNG.standard_normal((20, 3))
LABELS = RNG.integers(0, 3, size=20)


def assert_undefined(estimate: Estimate, *words: str):
    assert math.isnan(estimate.value)
    for word in words:
        assert word in estimate.reason


def test_estimate_of_valid_input_is_the_statistic_without_reason():
    estimate = r2_star_estimate(X, Y)
    assert estimate.reason is None and estimate.value == pytest.approx(float(r2_star(X, Y)), abs=1e-15)


def test_fewer_than_four_samples_is_nan_with_reason():
    assert_undefined(r2_star_estimate(X[:3], Y[:3]), "n = 3", "at least 4")


def test_constant_features_are_nan_with_reason():
    assert_undefined(r2_star_estimate(np.full((20, 4), 1.5, dtype=np.float32), Y), "X", "constant")
    assert_undefined(semi_partial_r2_estimate(X, Y, np.zeros((20, 2))), "Y", "constant")


def test_single_class_is_nan_with_reason():
    assert_undefined(relevance_estimate(X, np.full(20, 4)), "one class", "20 labels")


def test_every_sample_in_its_own_class_is_nan_with_reason():
    assert_undefined(relevance_estimate(X, np.arange(20)), "zero distance variance")


def test_non_finite_features_are_nan_with_reason():
    broken = X.copy()
    broken[2, 1] = np.inf
    assert_undefined(r2_star_estimate(broken, Y), "X", "infinite")


def test_features_fully_explained_by_the_removed_model_are_nan_with_reason():
    assert_undefined(semi_partial_r2_estimate(2 * Y, X, Y), "X", "fully explained by Y")
    assert_undefined(partial_r2_estimate(X, 0.5 * Y, Y), "G", "fully explained by Y")


def test_relevance_is_r2_star_with_one_hot_labels():
    estimate = relevance_estimate(X, LABELS)
    assert estimate.value == pytest.approx(float(r2_star(X, np.eye(3)[LABELS])), abs=1e-15)


def test_partial_relevance_in_both_forms():
    one_hot = label_embedding(LABELS)
    semi = relevance_estimate(X, LABELS, removed=Y)
    partial = relevance_estimate(X, LABELS, removed=Y, form="partial")
    assert semi.value == pytest.approx(float(semi_partial_r2(X, one_hot, Y)), abs=1e-15)
    assert partial.value == pytest.approx(float(partial_r2(X, one_hot, Y)), abs=1e-15)
    assert semi_partial_r2_estimate(X, one_hot, Y) == semi
    with pytest.raises(ValueError, match="form"):
        relevance_estimate(X, LABELS, removed=Y, form="full")


def test_different_sample_counts_are_an_error():
    with pytest.raises(ValueError, match="same number of samples"):
        r2_star_estimate(X, Y[:10])
