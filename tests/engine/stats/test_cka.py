"""Linear CKA against its feature-space formula, with invariances and its range."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdx_engine.stats import gram_matrix, linear_cka, linear_cka_from_gram


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
