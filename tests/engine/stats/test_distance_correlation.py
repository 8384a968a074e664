"""R²*, its partial forms and the V-statistic, checked against `dcor`, an independent numpy oracle,
invariances, properties and autograd."""
import math

import dcor
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdx_engine.stats import (
    distance_matrix,
    label_embedding,
    partial_r2,
    partial_r2_centred,
    projection,
    r2_star,
    r2_star_centred,
    semi_partial_r2,
    semi_partial_r2_centred,
    u_centre,
    u_inner,
    v_dcor2,
)

SHAPES = [(5, 1), (8, 3), (20, 1), (12, 500), (30, 50), (40, 300), (60, 20)]


def dependent_triple(n, d, seed):
    """X, G, Y with X depending on both G and Y, so every statistic is away from 0 and ±1."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, d))
    g = rng.standard_normal((n, max(1, d // 2)))
    x = np.concatenate([y**2, g], axis=1)[:, :d] + rng.standard_normal((n, d))
    return x, g, y


def oracle_u_centred(features):
    """U-centred distance matrix written out entry by entry from METHODS §1.1–1.2, direct distances."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    n = len(x)
    a = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1))
    centred = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                centred[i, j] = a[i, j] - a[i].sum() / (n - 2) - a[:, j].sum() / (n - 2) + a.sum() / ((n - 1) * (n - 2))
    return centred


def oracle_inner(a, b):
    n = len(a)
    return sum(a[i, j] * b[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 3))


def oracle_semi_partial(x, g, y):
    """sR²(X, G | Y) = ⟨P_{X|Y}, G̃⟩ / (|P_{X|Y}|·|G̃|), P_{X|Y} = Ã − (⟨Ã,B̃⟩/⟨B̃,B̃⟩)·B̃."""
    a, g_tilde, b = (oracle_u_centred(f) for f in (x, g, y))
    residual = a - oracle_inner(a, b) / oracle_inner(b, b) * b
    return oracle_inner(residual, g_tilde) / math.sqrt(oracle_inner(residual, residual) * oracle_inner(g_tilde, g_tilde))


@pytest.mark.parametrize("n, d", SHAPES)
def test_r2_star_matches_dcor_u_distance_correlation_sqr(n, d):
    x, g, y = dependent_triple(n, d, seed=n * 1000 + d)
    for first, second in ((x, y), (x, g), (g, y)):
        assert float(r2_star(first, second)) == pytest.approx(dcor.u_distance_correlation_sqr(first, second), abs=1e-9)


@pytest.mark.parametrize("n, d", SHAPES)
def test_partial_r2_matches_dcor_partial_distance_correlation(n, d):
    # dcor.partial_distance_correlation(x, y, z) returns Székely–Rizzo's pdCor*(x, y; z) =
    # (R*_xy − R*_xz·R*_yz) / sqrt((1 − R*_xz²)(1 − R*_yz²)) with R* the bias-corrected squared
    # distance correlations: the ratio ⟨P_{x|z}, P_{y|z}⟩ / (|P_{x|z}|·|P_{y|z}|), on the same (squared)
    # scale as R²*, not its square root. That is exactly partial_r2(x, g, y), so no square is taken.
    x, g, y = dependent_triple(n, d, seed=n * 1000 + d + 1)
    assert float(partial_r2(x, g, y)) == pytest.approx(dcor.partial_distance_correlation(x, g, y), abs=1e-9)


@pytest.mark.parametrize("n, d", [(5, 1), (8, 3), (15, 40), (30, 2)])
def test_semi_partial_r2_matches_independent_numpy_oracle(n, d):
    x, g, y = dependent_triple(n, d, seed=n + d)
    assert float(semi_partial_r2(x, g, y)) == pytest.approx(oracle_semi_partial(x, g, y), abs=1e-9)


@pytest.mark.parametrize("n, d", SHAPES)
def test_semi_partial_r2_matches_its_closed_form_in_dcor_correlations(n, d):
    # ⟨P_{X|Y}, G̃⟩ = |Ã||G̃|(R_xg − R_xy·R_yg) and |P_{X|Y}| = |Ã|·sqrt(1 − R_xy²).
    x, g, y = dependent_triple(n, d, seed=n * 7 + d)
    r_xg, r_xy, r_gy = (dcor.u_distance_correlation_sqr(*pair) for pair in ((x, g), (x, y), (g, y)))
    expected = (r_xg - r_xy * r_gy) / math.sqrt(1 - r_xy**2)
    assert float(semi_partial_r2(x, g, y)) == pytest.approx(expected, abs=1e-9)


def test_semi_partial_equals_partial_when_g_is_uncorrelated_with_y():
    x, g, y = dependent_triple(30, 6, seed=3)
    a_tilde, g_tilde, b_tilde = (u_centre(distance_matrix(f)) for f in (x, g, y))
    g_orthogonal = projection(g_tilde, b_tilde)
    assert abs(float(u_inner(g_orthogonal, b_tilde))) < 1e-12
    semi = float(semi_partial_r2_centred(a_tilde, g_orthogonal, b_tilde))
    assert float(partial_r2_centred(a_tilde, g_orthogonal, b_tilde)) == pytest.approx(semi, abs=1e-12)
    assert abs(semi) > 0.05


def test_partial_is_semi_partial_rescaled_by_g_residual_norm():
    x, g, y = dependent_triple(25, 4, seed=5)
    r_gy = float(r2_star(g, y))
    expected = float(semi_partial_r2(x, g, y)) / math.sqrt(1 - r_gy**2)
    assert float(partial_r2(x, g, y)) == pytest.approx(expected, abs=1e-12)


def test_distance_matrix_flattens_trailing_dims_and_matches_direct_distances():
    features = np.random.default_rng(0).standard_normal((7, 2, 3, 3)).astype(np.float32)
    a = distance_matrix(torch.from_numpy(features))
    flat = features.reshape(7, -1).astype(np.float64)
    direct = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1))
    assert a.dtype == torch.float64 and a.shape == (7, 7)
    # the diagonal holds sqrt(ε) with ε = 1e-18 × the largest squared distance
    np.testing.assert_allclose(a.numpy(), direct + np.eye(7) * 1e-9 * direct.max(), rtol=0, atol=1e-12)


def test_u_centre_matches_dcor_and_has_zero_row_sums():
    a = distance_matrix(np.random.default_rng(1).standard_normal((9, 4)))
    centred = u_centre(a)
    np.testing.assert_allclose(centred.numpy(), dcor.u_centered(a.numpy() - np.eye(9) * 1e-9), atol=1e-12)
    np.testing.assert_allclose(centred.sum(dim=1).numpy(), 0, atol=1e-12)
    assert torch.all(torch.diagonal(centred) == 0)


def test_u_centre_needs_four_samples():
    with pytest.raises(ValueError, match="at least 4"):
        u_centre(distance_matrix(np.zeros((3, 2))))


def test_r2_star_is_invariant_to_rotation_and_positive_scaling_of_x():
    x, _, y = dependent_triple(40, 8, seed=11)
    rotation, _ = np.linalg.qr(np.random.default_rng(12).standard_normal((8, 8)))
    reference = float(r2_star(x, y))
    assert float(r2_star(x @ rotation, y)) == pytest.approx(reference, abs=1e-12)
    assert float(r2_star(3.7 * x, y)) == pytest.approx(reference, abs=1e-12)
    assert float(r2_star(1e-3 * x @ rotation, 250.0 * y)) == pytest.approx(reference, abs=1e-12)


def test_r2_star_is_invariant_to_a_permutation_applied_to_both():
    x, g, y = dependent_triple(30, 5, seed=13)
    order = np.random.default_rng(14).permutation(30)
    assert float(r2_star(x[order], y[order])) == pytest.approx(float(r2_star(x, y)), abs=1e-12)
    assert float(partial_r2(x[order], g[order], y[order])) == pytest.approx(float(partial_r2(x, g, y)), abs=1e-12)


def test_r2_star_of_x_with_itself_is_one():
    x = np.random.default_rng(15).standard_normal((20, 100))
    assert float(r2_star(x, x)) == pytest.approx(1.0, abs=1e-12)


def test_r2_star_is_nan_not_zero_for_constant_features_or_a_single_label():
    x = np.random.default_rng(16).standard_normal((10, 3))
    assert math.isnan(float(r2_star(np.ones((10, 4)), x)))
    assert math.isnan(float(r2_star(x, label_embedding(np.full(10, 2)))))
    assert math.isnan(float(v_dcor2(np.ones((10, 4)), x)))


def test_v_dcor2_is_biased_towards_one_when_d_exceeds_n_while_r2_star_is_near_zero():
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((50, 1000)), rng.standard_normal((50, 1000))
    assert float(v_dcor2(x, y)) > 0.97
    assert float(v_dcor2(x, y, normalise_rows=True)) > 0.97
    assert abs(float(r2_star(x, y))) < 0.1


def test_v_dcor2_matches_dcor_distance_correlation_sqr():
    x, _, y = dependent_triple(20, 3, seed=18)
    assert float(v_dcor2(x, y)) == pytest.approx(dcor.distance_correlation_sqr(x, y), abs=1e-9)


def test_label_embedding_is_one_hot_or_rows_of_class_embeddings():
    labels = np.array([2, 0, 1, 2])
    np.testing.assert_array_equal(label_embedding(labels).numpy(), np.eye(3)[labels])
    assert label_embedding(labels, num_classes=5).shape == (4, 5)
    embeddings = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(label_embedding(labels, class_embeddings=embeddings).numpy(), embeddings[labels])
    with pytest.raises(ValueError):
        label_embedding(labels, num_classes=2)
    with pytest.raises(ValueError):
        label_embedding(np.array([0.5, 1.0]))


def test_r2_star_with_labels_matches_dcor_on_one_hot_rows():
    labels = np.random.default_rng(19).integers(0, 4, size=30)
    x = np.random.default_rng(20).standard_normal((30, 5)) + labels[:, None]
    one_hot = np.eye(4)[labels]
    assert float(r2_star(x, label_embedding(labels))) == pytest.approx(dcor.u_distance_correlation_sqr(x, one_hot), abs=1e-9)


feature_arrays = st.integers(4, 10).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, st.tuples(st.just(n), st.integers(1, 4)), elements=st.floats(-100, 100)),
        arrays(np.float64, st.tuples(st.just(n), st.integers(1, 4)), elements=st.floats(-100, 100)),
    )
)


@settings(deadline=None, max_examples=60)
@given(feature_arrays)
def test_r2_star_is_symmetric(pair):
    x, y = pair
    forward, backward = float(r2_star(x, y)), float(r2_star(y, x))
    assert (math.isnan(forward) and math.isnan(backward)) or forward == pytest.approx(backward, abs=1e-12)


@settings(deadline=None, max_examples=60)
@given(feature_arrays)
def test_r2_star_lies_in_minus_one_to_one(pair):
    value = float(r2_star(*pair))
    assert math.isnan(value) or -1 - 1e-12 <= value <= 1 + 1e-12


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(21)
    x = torch.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    g, y = torch.tensor(rng.standard_normal((6, 2))), torch.tensor(rng.standard_normal((6, 2)))
    assert torch.autograd.gradcheck(lambda features: r2_star(features, y), (x,))
    assert torch.autograd.gradcheck(lambda features: semi_partial_r2(features, g, y), (x,))
    assert torch.autograd.gradcheck(lambda features: partial_r2(features, g, y), (x,))


def test_gradient_is_finite_with_duplicated_rows_and_float32_features():
    rng = np.random.default_rng(22)
    x = torch.tensor(rng.standard_normal((8, 2, 3, 3)), dtype=torch.float32)
    x[3] = x[0]
    x[5] = x[0]
    x.requires_grad_(True)
    y = torch.tensor(rng.standard_normal((8, 4)))
    labels = label_embedding(rng.integers(0, 3, size=8))
    (r2_star(x, y) + semi_partial_r2(x, labels, y)).backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_r2_star_centred_reuses_cached_centred_matrices():
    x, _, y = dependent_triple(12, 3, seed=23)
    a_tilde, b_tilde = u_centre(distance_matrix(x)), u_centre(distance_matrix(y))
    assert float(r2_star_centred(a_tilde, b_tilde)) == float(r2_star(x, y))
