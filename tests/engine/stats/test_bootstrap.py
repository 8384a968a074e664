"""Seeded percentile bootstrap: reproducible, sensible intervals, NaN resamples dropped and counted."""
import math

import numpy as np
import pytest

from kdx_engine.stats import (
    bootstrap_interval,
    bootstrap_linear_cka,
    bootstrap_partial_r2,
    bootstrap_r2_star,
    bootstrap_semi_partial_r2,
    distance_matrix,
    gram_matrix,
    label_embedding,
    linear_cka,
    partial_r2,
    r2_star,
    semi_partial_r2,
)


def dependent_pair(n, seed, noise=0.3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    return x, np.sin(x[:, :2]) + noise * rng.standard_normal((n, 2))


def test_same_seed_gives_the_same_interval_and_another_seed_a_different_one():
    a, b = (distance_matrix(f) for f in dependent_pair(40, seed=0))
    first, again, other = bootstrap_r2_star(a, b, seed=7), bootstrap_r2_star(a, b, seed=7), bootstrap_r2_star(a, b, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert (first.resamples, first.seed, first.level) == (200, 7, 0.95)


def test_interval_contains_the_point_estimate_on_a_strongly_dependent_case():
    x, y = dependent_pair(60, seed=1, noise=0.1)
    interval = bootstrap_r2_star(distance_matrix(x), distance_matrix(y))
    assert interval.value == pytest.approx(float(r2_star(x, y)), abs=1e-12)
    assert interval.low <= interval.value <= interval.high
    assert interval.low > 0.3 and interval.dropped == 0


def test_interval_narrows_as_n_grows():
    widths = []
    for n in (25, 200):
        interval = bootstrap_r2_star(*(distance_matrix(f) for f in dependent_pair(n, seed=2)), resamples=100)
        widths.append(interval.high - interval.low)
    assert widths[1] < 0.6 * widths[0]


def test_nan_resamples_are_dropped_and_counted():
    n, seed = 10, 3
    values = np.arange(n, dtype=np.float64)

    def mean_unless_first_index_is_even(indices):
        return math.nan if indices[0] % 2 == 0 else values[indices].mean()

    interval = bootstrap_interval(mean_unless_first_index_is_even, n, resamples=50, seed=seed)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, size=n) for _ in range(50)]
    kept = [values[d].mean() for d in draws if d[0] % 2 == 1]
    assert interval.dropped == 50 - len(kept)
    assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(kept, [2.5, 97.5])))


def test_all_nan_resamples_give_a_nan_interval():
    interval = bootstrap_interval(lambda indices: math.nan, 5, resamples=10)
    assert math.isnan(interval.low) and math.isnan(interval.high) and interval.dropped == 10


def test_resamples_holding_one_class_only_are_dropped():
    x = np.random.default_rng(4).standard_normal((8, 3))
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    interval = bootstrap_r2_star(distance_matrix(x), distance_matrix(label_embedding(labels)), resamples=100)
    assert 0 < interval.dropped < 100
    assert not math.isnan(interval.low)


def test_partial_forms_and_cka_bootstrap_from_precomputed_matrices():
    rng = np.random.default_rng(5)
    y = rng.standard_normal((30, 3))
    g = rng.standard_normal((30, 2))
    x = np.concatenate([y, g], axis=1) + 0.5 * rng.standard_normal((30, 5))
    a, g_distances, b = (distance_matrix(f) for f in (x, g, y))
    semi = bootstrap_semi_partial_r2(a, g_distances, b, resamples=50)
    partial = bootstrap_partial_r2(a, g_distances, b, resamples=50)
    cka = bootstrap_linear_cka(gram_matrix(x), gram_matrix(y), resamples=50)
    assert semi.value == pytest.approx(float(semi_partial_r2(x, g, y)), abs=1e-12)
    assert partial.value == pytest.approx(float(partial_r2(x, g, y)), abs=1e-12)
    assert cka.value == pytest.approx(float(linear_cka(x, y)), abs=1e-12)
    for interval in (semi, partial, cka):
        assert interval.low <= interval.high and interval.resamples == 50


def test_level_outside_zero_to_one_is_an_error():
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(lambda indices: 0.0, 5, level=95)


def test_interval_is_shifted_by_the_resampling_bias_and_holds_the_estimate():
    """Repeated images inflate R²* of a resample; the interval is centred back on the estimate."""
    from kdx_engine.stats import bootstrap_r2_star, distance_matrix

    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 40))
    y = 0.3 * x[:, :5].sum(axis=1, keepdims=True) + rng.normal(size=(60, 3))
    a, b = distance_matrix(x), distance_matrix(y)
    interval = bootstrap_r2_star(a, b, resamples=100, seed=1)
    assert interval.bias > 0  # duplicates push resamples up
    assert interval.low < interval.value < interval.high
    draws_low = interval.low + interval.bias
    assert draws_low > interval.low
