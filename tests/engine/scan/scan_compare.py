"""Two scans of the same images on different float32 paths (batch sizes, Ray actors with their own thread
count) agree row by row up to float32 rounding: each column within the tolerance its kind of value allows
(see float32_tolerances), each saved map within NETWORK_RTOL of its scale."""
import math

import numpy as np
import pytest
import torch

from float32_tolerances import (NETWORK_RTOL, PROBABILITY_ATOL, energy_tolerance, network_atol, pearson_tolerance,
                                spearman_tolerance, top_iou_tolerance)
from kdx_engine.cams.faithfulness import pixel_ranks, step_counts
from kdx_engine.scan import read_map

PAIR_METRICS = {"pearson": pearson_tolerance, "spearman": spearman_tolerance, "top_iou": top_iou_tolerance}
MAP_KEYS = ("gradcam_teacher", "gradcam_student", "gradcam_base", "unicam_distilled", "unicam_residual")


def assert_maps_close(got, expected, context=None):
    """The same pixels undefined (outside a crop), the others within NETWORK_RTOL of the map's scale."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=str(context))
    np.testing.assert_allclose(got, expected, rtol=0, atol=network_atol(expected), equal_nan=True,
                               err_msg=str(context))


def faithfulness_tolerance(a, b, steps: int) -> float:
    """Deletion/insertion AUCs are piecewise constant in the map's pixel order. When both versions of the
    map (a, b) put the same pixels into every step's set, the curves differ by float32 rounding of the
    probabilities (PROBABILITY_ATOL). Each pixel that rounding moves across a step's threshold (a near-tie,
    found by comparing the two orders) changes that point's image by one pixel: about 1/Δk of the step's
    change in probability (≤ 1), where Δk pixels make a step; four times that per moved pixel, and the
    trapezoid weighs an inner point by 1/steps."""
    a, b = (torch.from_numpy(np.ascontiguousarray(m, dtype=np.float64))[None] for m in (a, b))
    ranks_a, ranks_b = pixel_ranks(a).flatten(), pixel_ranks(b).flatten()
    counts = step_counts(ranks_a.numel(), steps)
    moved = sum(int(((ranks_a < k) & (ranks_b >= k)).sum()) for k in counts[1:-1].tolist())
    return PROBABILITY_ATOL + 4 * moved / (steps * int((counts[1:] - counts[:-1]).min()))


def assert_same_rows(folder, row, other_folder, other, faithfulness_steps: int = 0):
    """``other`` (a row of the scan in ``other_folder``) equals ``row`` (of ``folder``) up to float32;
    ``faithfulness_steps``: the scan's deletion/insertion steps."""
    assert row.keys() == other.keys()

    def maps(key):
        return read_map(folder, row, key), read_map(other_folder, other, key)

    for key, value in row.items():
        if key in ("maps_shard", "maps_offset"):
            continue
        context = (row["path"], key)
        if not isinstance(value, float):
            assert other[key] == value, context
        elif math.isnan(value):
            assert math.isnan(other[key]), context
        elif key.rsplit("_", 1)[-1] in ("pearson", "spearman") or key.endswith("_top_iou"):
            name = "top_iou" if key.endswith("_top_iou") else key.rsplit("_", 1)[-1]
            method = key[:-len(f"_ts_{name}")]
            a, a_other = maps(f"{method}_teacher")
            b, b_other = maps(f"{method}_student")
            assert other[key] == pytest.approx(value, abs=PAIR_METRICS[name](a, a_other, b, b_other)), context
        elif key.endswith("_energy"):
            assert other[key] == pytest.approx(value, abs=energy_tolerance(*maps(key[:-len("_energy")]))), context
        elif key.endswith("_pointing"):
            a, b = (np.nan_to_num(m, nan=-np.inf) for m in maps(key[:-len("_pointing")]))
            if np.argmax(a) == np.argmax(b):  # else a near-tie of two maxima that rounding settled
                assert other[key] == value, context
        elif key.endswith("_score"):
            assert other[key] == pytest.approx(value, rel=NETWORK_RTOL), context
        elif key.endswith(("_deletion_auc", "_insertion_auc")):
            tolerance = faithfulness_tolerance(*maps(key.rsplit("_", 2)[0]), faithfulness_steps)
            assert other[key] == pytest.approx(value, abs=tolerance), (context, value, other[key])
        elif key.endswith(("_prob", "_confidence")) or key == "kl_teacher_student":
            assert other[key] == pytest.approx(value, abs=PROBABILITY_ATOL), (context, value, other[key])
        else:  # not computed through a model (the mask's share of the image): the same arithmetic
            assert other[key] == pytest.approx(value, rel=1e-12), context
    if row["error"] is None:
        for key in (k for k in MAP_KEYS if f"{k}_note" in row):  # the maps this scan has
            assert_maps_close(*maps(key)[::-1], context=(row["path"], key))
