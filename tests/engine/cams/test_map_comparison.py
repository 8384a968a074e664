import math

import numpy as np
import pytest
import torch

from kdx_engine.values import Value

from kdx_engine.cams.map_comparison import (
    average_ranks,
    compare_maps,
    energy_in_mask,
    pearson,
    pointing_game,
    spearman,
    top_fraction_iou,
)


@pytest.fixture
def smooth_map():
    rng = np.random.default_rng(0)
    return rng.random((7, 9))


def _assert_undefined(metric: Value, words: str):
    assert math.isnan(metric.value) and not metric.is_defined
    assert words in metric.reason


def test_identical_maps_agree_perfectly(smooth_map):
    assert pearson(smooth_map, smooth_map).value == pytest.approx(1.0)
    assert spearman(smooth_map, smooth_map).value == pytest.approx(1.0)
    assert top_fraction_iou(smooth_map, smooth_map).value == 1.0


def test_negated_map_correlates_minus_one(smooth_map):
    assert pearson(smooth_map, -smooth_map).value == pytest.approx(-1.0)
    assert spearman(smooth_map, -smooth_map).value == pytest.approx(-1.0)


def test_monotone_transform_keeps_spearman_and_changes_pearson(smooth_map):
    warped = np.exp(8.0 * smooth_map)
    assert spearman(smooth_map, warped).value == pytest.approx(1.0)
    assert pearson(smooth_map, warped).value < 0.95


def test_correlations_match_independent_oracles(smooth_map):
    other = np.round(np.sin(3.0 * smooth_map) + 0.3 * np.arange(63).reshape(7, 9) % 1.7, 1)  # many ties
    expected_pearson = np.corrcoef(smooth_map.ravel(), other.ravel())[0, 1]
    assert pearson(smooth_map, other).value == pytest.approx(expected_pearson, abs=1e-12)
    stats = pytest.importorskip("scipy.stats")
    expected_spearman = stats.spearmanr(smooth_map.ravel(), other.ravel()).statistic
    assert spearman(smooth_map, other).value == pytest.approx(expected_spearman, abs=1e-12)


def test_average_ranks_share_the_mean_rank_of_ties():
    assert average_ranks(np.array([[10.0, 20.0], [10.0, 5.0]])).tolist() == [2.5, 4.0, 2.5, 1.0]


def test_accepts_torch_tensors(smooth_map):
    a, b = torch.from_numpy(smooth_map).float(), torch.from_numpy(smooth_map ** 2).float()
    assert pearson(a, b).value == pytest.approx(pearson(smooth_map, smooth_map ** 2).value, abs=1e-6)


def test_constant_map_gives_nan_with_reason(smooth_map):
    flat = np.full_like(smooth_map, 0.5)
    _assert_undefined(pearson(flat, smooth_map), "map a is constant")
    _assert_undefined(spearman(smooth_map, flat), "map b is constant")
    _assert_undefined(top_fraction_iou(flat, smooth_map), "constant")
    _assert_undefined(pointing_game(flat, np.ones_like(flat)), "constant")


def test_non_finite_map_gives_nan_with_reason(smooth_map):
    broken = smooth_map.copy()
    broken[2, 3] = np.nan
    _assert_undefined(pearson(broken, smooth_map), "non-finite")
    _assert_undefined(energy_in_mask(broken, smooth_map > 0.5), "non-finite")


def test_shape_mismatch_is_a_caller_error(smooth_map):
    with pytest.raises(ValueError, match="shape"):
        pearson(smooth_map, smooth_map[:, :-1])
    with pytest.raises(ValueError, match="mask shape"):
        energy_in_mask(smooth_map, np.ones((2, 2)))


def test_top_fraction_iou_of_hand_made_maps():
    # 5×5 = 25 pixels, top 20% = 5 pixels: a's top is row 0, b's top is 3 pixels of row 0 and 2 of row 1.
    a = np.zeros((5, 5))
    a[0, :] = [9, 8, 7, 6, 5]
    b = np.zeros((5, 5))
    b[0, :3] = [9, 8, 7]
    b[1, :2] = [6, 5]
    assert top_fraction_iou(a, b).value == pytest.approx(3 / 7)


def test_top_fraction_ties_resolve_in_row_major_order():
    # k = round(0.5 * 4) = 2; a has 3 tied maxima, so its region is the first two in row-major order.
    a = np.array([[1.0, 1.0], [1.0, 0.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert top_fraction_iou(a, b, fraction=0.5).value == pytest.approx(1 / 3)


def test_energy_in_mask_is_the_exact_share():
    saliency = np.array([[4.0, 1.0], [3.0, 2.0]])
    mask = np.array([[1, 0], [0, 1]])
    assert energy_in_mask(saliency, mask).value == pytest.approx(6 / 10)
    assert energy_in_mask(saliency * np.array([[1, 0], [0, 1]]), mask).value == 1.0


def test_energy_ignores_negative_values():
    saliency = np.array([[2.0, -5.0], [-1.0, 2.0]])
    assert energy_in_mask(saliency, np.array([[1, 1], [0, 0]])).value == pytest.approx(0.5)


def test_energy_undefined_for_empty_mask_or_zero_map(smooth_map):
    _assert_undefined(energy_in_mask(smooth_map, np.zeros_like(smooth_map)), "mask is empty")
    _assert_undefined(energy_in_mask(-smooth_map, smooth_map > 0.5), "no positive energy")


def test_pointing_game_hit_miss_and_tolerance():
    saliency = np.zeros((6, 6))
    saliency[1, 1] = 1.0
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 1:3] = True
    assert pointing_game(saliency, mask).value == 1.0
    assert pointing_game(saliency, ~mask).value == 0.0
    far = np.zeros((6, 6), dtype=bool)
    far[4, 1] = True  # 3 pixels below the maximum
    assert pointing_game(saliency, far, tolerance=2).value == 0.0
    assert pointing_game(saliency, far, tolerance=3).value == 1.0


def test_pointing_game_uses_first_argmax_among_ties():
    saliency = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert pointing_game(saliency, np.array([[0, 1], [0, 0]])).value == 1.0
    assert pointing_game(saliency, np.array([[0, 0], [1, 0]])).value == 0.0


def test_compare_maps_collects_every_metric(smooth_map):
    mask = smooth_map > 0.7
    result = compare_maps(smooth_map, smooth_map ** 3, mask=mask)
    assert result.pearson == pearson(smooth_map, smooth_map ** 3)
    assert result.spearman.value == pytest.approx(1.0)
    assert result.top_iou.value == 1.0
    assert result.energy_a == energy_in_mask(smooth_map, mask)
    assert result.energy_b.value > result.energy_a.value  # cubing concentrates mass on high values
    assert result.pointing_a.value == result.pointing_b.value == 1.0
    record = result.to_dict()
    assert record["top_iou"] == 1.0 and "pearson_reason" not in record


def test_compare_maps_without_mask_leaves_mask_metrics_empty(smooth_map):
    result = compare_maps(smooth_map, np.zeros_like(smooth_map))
    assert result.energy_a is None and result.pointing_b is None
    assert "constant" in result.to_dict()["pearson_reason"]
