"""The batched §5 map metrics equal the per-pair ones row by row: values, NaNs and reasons."""
import math

import numpy as np
import pytest

from kdx_engine.cams import energy_in_mask, pearson, pointing_game, spearman, top_fraction_iou
from kdx_engine.cams.map_batches import (agreement_rows, average_ranks_rows, energy_in_mask_rows, pointing_game_rows,
                                         row_sort, top_region_rows)
from kdx_engine.cams.map_comparison import average_ranks


def _batch(seed: int, n: int = 24, shape=(9, 13)):
    """Maps with ties (quantised, many zeros as after a ReLU), constant, all-zero and NaN rows."""
    rng = np.random.default_rng(seed)
    a = np.maximum(np.round(rng.normal(size=(n, *shape)), 1), 0.0)
    b = np.maximum(a + rng.normal(scale=0.7, size=a.shape), 0.0)
    b[::3] = np.round(b[::3], 0)
    a[1] = 0.25  # constant
    b[2] = 0.0  # no energy, constant
    a[3, 0, 0] = np.nan
    b[4, 2, 5] = np.inf
    a[5] = -np.abs(a[5])  # no positive energy
    masks = rng.random((n, *shape)) < 0.3
    masks[6] = False  # empty mask
    masks[7] = True
    return a, b, masks


def _same(batched, singles):
    assert len(batched) == len(singles)
    for got, want in zip(batched, singles):
        if math.isnan(want.value):
            assert math.isnan(got.value) and got.reason == want.reason
        else:
            assert got.reason is None and got.value == pytest.approx(want.value, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_metrics_equal_the_per_pair_functions(seed):
    a, b, _ = _batch(seed)
    for fraction in (0.2, 0.05, 1.0):
        pearsons, spearmans, ious = agreement_rows(a, b, fraction)
        _same(pearsons, [pearson(x, y) for x, y in zip(a, b)])
        _same(spearmans, [spearman(x, y) for x, y in zip(a, b)])
        _same(ious, [top_fraction_iou(x, y, fraction) for x, y in zip(a, b)])
    assert sum(not math.isnan(v.value) for v in agreement_rows(a, b)[0]) >= 15  # mostly regular rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_metrics_equal_the_per_pair_functions(seed):
    a, b, masks = _batch(seed)
    for maps in (a, b):
        _same(energy_in_mask_rows(maps, masks), [energy_in_mask(m, k) for m, k in zip(maps, masks)])
        _same(pointing_game_rows(maps, masks), [pointing_game(m, k) for m, k in zip(maps, masks)])
    hits = [v.value for v in pointing_game_rows(a, masks)]
    assert 0.0 in hits and 1.0 in hits  # both outcomes occur


def test_average_ranks_rows_equal_the_flat_ranks_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(7, 40)).astype(float)
    expected = np.stack([average_ranks(row) for row in x])
    np.testing.assert_array_equal(average_ranks_rows(x), expected)
    np.testing.assert_array_equal(average_ranks_rows(x, row_sort(x)), expected)
    np.testing.assert_array_equal(average_ranks_rows(np.array([[2.0, 2.0, 1.0, 3.0]])), [[2.5, 2.5, 1.0, 4.0]])


def test_shapes_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match="differ in shape"):
        agreement_rows(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="N×H×W"):
        energy_in_mask_rows(np.zeros((3, 3)), np.zeros((3, 3)))


def test_top_region_rows_equal_the_stable_sort_with_ties_at_the_threshold():
    from kdx_engine.cams.map_comparison import top_pixels

    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(9, 30)).astype(float)  # many ties at every threshold
    for k in (1, 5, 12, 30):
        expected = np.zeros_like(x, dtype=bool)
        for row, values in zip(expected, x):
            row[top_pixels(values, k)] = True
        np.testing.assert_array_equal(top_region_rows(x, k), expected)
        np.testing.assert_array_equal(top_region_rows(x, k, row_sort(x)[0]), expected)  # threshold off the sort
