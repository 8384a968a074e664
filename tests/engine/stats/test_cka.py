"""Linear CKA against its feature-space formula, debiased linear CKA against Song et al.'s unbiased
HSIC formula, with invariances, ranges and (debiased) ≈ 0 in expectation for independent features."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdx_engine.stats import (
    debiased_linear_cka,
    debiased_linear_cka_from_gram,
    gram_matrix,
    linear_cka,
    linear_cka_from_gram,
)


def feature_space_cka(x, y):
    """Kornblith et al.: ‖YᵀX‖²_F / (‖XᵀX‖_F·‖YᵀY‖_F) on column-centred features."""
    x = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(axis=0)
    y = y.reshape(len(y), -1) - y.reshape(len(y), -1).mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.mark.parametrize("n, dx, dy", [(10, 3, 5), (50, 20, 20), (12, 400, 300)])
def test_linear_cka_matches_feature_space_formula(n, dx, dy):
    rng = np.random.default_rng(n + dx)
    x = rng.standard_normal((n, dx))
    y = np.tanh(x @ rng.standard_normal((dx, dy))) + rng.standard_normal((n, dy))
    assert float(linear_cka(x, y)) == pytest.approx(feature_space_cka(x, y), abs=1e-12)


def test_linear_cka_from_gram_equals_features_version():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((15, 30)), rng.standard_normal((15, 4))
    assert float(linear_cka_from_gram(gram_matrix(x), gram_matrix(y))) == pytest.approx(float(linear_cka(x, y)), abs=1e-12)


def test_linear_cka_is_one_for_rotated_scaled_shifted_copies():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 8))
    rotation, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert float(linear_cka(x, 3.0 * x @ rotation + 100.0)) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_accepts_float32_image_features():
    x = torch.randn(6, 4, 3, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(3))
    value = linear_cka(x, x.flatten(1)[:, :5])
    assert value.dtype == torch.float64 and 0 < float(value) < 1


def test_linear_cka_of_constant_features_is_nan():
    x = np.random.default_rng(4).standard_normal((10, 3))
    assert math.isnan(float(linear_cka(np.full((10, 5), 7.0), x)))


@settings(deadline=None, max_examples=60)
@given(
    st.integers(2, 10).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, st.tuples(st.just(n), st.integers(1, 5)), elements=st.floats(-100, 100)),
            arrays(np.float64, st.tuples(st.just(n), st.integers(1, 5)), elements=st.floats(-100, 100)),
        )
    )
)
def test_linear_cka_lies_in_zero_to_one(pair):
    value = float(linear_cka(*pair))
    assert math.isnan(value) or -1e-12 <= value <= 1 + 1e-12


# ---------------------------------------------------------------- debiased linear CKA
def song_unbiased_hsic(k, l):
    """Song et al. (2012), eq. 5: [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)),
    K̃ and L̃ the Gram matrices with zero diagonals."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def reference_debiased_cka(x, y):
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    k, l = x @ x.T, y @ y.T
    return song_unbiased_hsic(k, l) / math.sqrt(song_unbiased_hsic(k, k) * song_unbiased_hsic(l, l))


@pytest.mark.parametrize("n, dx, dy", [(6, 3, 5), (40, 20, 20), (12, 400, 300)])
def test_debiased_cka_matches_the_unbiased_hsic_formula(n, dx, dy):
    rng = np.random.default_rng(n + dx)
    x = rng.standard_normal((n, dx))
    y = np.tanh(x @ rng.standard_normal((dx, dy))) + rng.standard_normal((n, dy))
    expected = reference_debiased_cka(x, y)
    assert float(debiased_linear_cka(x, y)) == pytest.approx(expected, abs=1e-10)
    assert float(debiased_linear_cka_from_gram(gram_matrix(x), gram_matrix(y))) == pytest.approx(expected, abs=1e-10)


def test_debiased_cka_keeps_its_precision_for_features_with_a_large_mean():
    """ReLU-like features far from the origin: the Gram matrix is double-centred before U-centring."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((30, 50))
    y = x[:, :10] + 0.5 * rng.standard_normal((30, 10))
    expected = reference_debiased_cka(x, y)  # centred features: the statistic ignores the mean
    assert float(debiased_linear_cka(x + 1e3, y + 1e3)) == pytest.approx(expected, abs=1e-10)
    assert float(debiased_linear_cka_from_gram(gram_matrix(x + 1e3), gram_matrix(y + 1e3))) == pytest.approx(
        expected, abs=1e-8)


def test_debiased_cka_is_about_zero_in_expectation_for_independent_features():
    rng = np.random.default_rng(8)
    debiased, plain = [], []
    for _ in range(300):
        x, y = rng.standard_normal((20, 10)), rng.standard_normal((20, 10))
        debiased.append(float(debiased_linear_cka(x, y)))
        plain.append(float(linear_cka(x, y)))
    standard_error = np.std(debiased, ddof=1) / math.sqrt(len(debiased))
    assert abs(np.mean(debiased)) <= 3 * standard_error, (np.mean(debiased), standard_error)
    assert np.mean(plain) > 0.3  # the plug-in estimator's bias at n = 20, d = 10
    assert min(debiased) < 0  # an unbiased estimator of 0 must go below it


def test_debiased_cka_is_one_for_rotated_scaled_shifted_copies_and_nan_for_constants():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((20, 8))
    rotation, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert float(debiased_linear_cka(x, 3.0 * x @ rotation + 100.0)) == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(float(debiased_linear_cka(np.full((20, 5), 7.0), x)))


@settings(deadline=None, max_examples=40)
@given(
    st.integers(4, 10).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, st.tuples(st.just(n), st.integers(1, 5)), elements=st.floats(-100, 100)),
            arrays(np.float64, st.tuples(st.just(n), st.integers(1, 5)), elements=st.floats(-100, 100)),
        )
    )
)
def test_debiased_cka_lies_in_minus_one_to_one(pair):
    value = float(debiased_linear_cka(*pair))
    assert math.isnan(value) or -1 - 1e-12 <= value <= 1 + 1e-12
