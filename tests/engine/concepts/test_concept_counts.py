"""Concept cells, counts, λ_ratio and trajectory metrics on hand-made entropy maps (METHODS §6)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdx_engine.concepts.concept_counts import (
    count_concepts, count_differences, count_statistics, foreground_cells, mean_background_entropy,
)
from kdx_engine.concepts.trajectory import (
    checkpoint_series, layer_weights, trajectory_differences, trajectory_metrics, weight_distances,
)


def _maps():
    """Three 2×2 maps; foreground = the left column."""
    fg = np.array([[True, False], [True, False]])
    entropies = np.array([
        [[-3.0, -2.0], [-2.5, -2.0]],   # fg cells: −3.0 and −2.5
        [[-2.0, -2.4], [-2.0, -2.0]],   # a background concept
        [[-2.0, -2.0], [-2.0, -2.0]],   # none
    ])
    return entropies, np.stack([fg] * 3)


def test_counts_follow_the_definitions():
    entropies, fg = _maps()
    h_bar = mean_background_entropy(entropies, fg)
    assert h_bar == pytest.approx(np.mean([-2.0, -2.0, -2.4, -2.0, -2.0, -2.0]))
    counts = count_concepts(entropies, fg, threshold=0.2)
    # H̄ ≈ −2.067: concept when H_c < H̄ − 0.2 ≈ −2.267
    assert counts.n_fg.tolist() == [2, 0, 0]
    assert counts.n_bg.tolist() == [0, 1, 0]
    stats = count_statistics(entropies, fg, threshold=0.2)
    assert stats["N_fg"].value == pytest.approx(2 / 3)
    assert stats["lambda_ratio"].value == pytest.approx((1.0 + 0.0) / 2)  # the image without concepts left out


def test_intervals_are_the_delete_one_jackknife_with_h_bar_recomputed():
    rng = np.random.default_rng(0)
    entropies = rng.normal(-2.8, 0.3, size=(12, 4, 4))
    fg = np.zeros((12, 4, 4), dtype=bool)
    fg[:, 1:3, 1:3] = True
    entropies[fg] -= 0.3
    value = count_statistics(entropies, fg)["N_fg"]
    replicates = np.array([count_concepts(np.delete(entropies, k, 0), np.delete(fg, k, 0)).n_fg.mean()
                           for k in range(12)])
    se = np.sqrt(11 / 12 * np.sum((replicates - replicates.mean()) ** 2))
    full = count_concepts(entropies, fg).n_fg.mean()
    assert value.value == pytest.approx(full)
    assert value.low == pytest.approx(max(full - 1.959964 * se, 0.0), abs=1e-5)
    assert value.high == pytest.approx(full + 1.959964 * se, abs=1e-5)
    diff = count_differences(entropies, entropies, fg)
    assert diff["N_fg"].value == 0 and diff["N_fg"].low == 0 and diff["N_fg"].high == 0


def test_without_masks_only_n_is_reported():
    entropies, _ = _maps()
    stats = count_statistics(entropies, None)
    assert list(stats) == ["N"]
    counts = count_concepts(entropies, None)
    assert counts.n_fg is None and not counts.has_masks
    assert counts.h_bar == pytest.approx(entropies.mean())


def test_undefined_ratio_says_why():
    entropies = np.full((3, 2, 2), -2.8)
    fg = np.zeros((3, 2, 2), dtype=bool)
    fg[:, 0, 0] = True
    ratio = count_statistics(entropies, fg)["lambda_ratio"]
    assert not ratio.is_defined and "no image has a concept" in ratio.reason


def test_foreground_cells_need_half_the_pixels():
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:2, 0:2] = True   # a quarter of cell (0, 0) of a 2×2 grid
    mask[4:8, 4:8] = True   # all of cell (1, 1)
    mask[0:4, 4:8] = True   # all of cell (0, 1)
    mask[4:6, 0:4] = True   # half of cell (1, 0)
    assert foreground_cells(mask, 2).tolist() == [[False, True], [True, True]]
    assert foreground_cells(np.ones((48, 48), bool), 16).all()


def test_dist_is_the_path_length_of_the_layer_weights(tmp_path):
    w0 = torch.tensor([[3.0, 4.0]])
    states = [w0, w0 + torch.tensor([[3.0, 4.0]]), w0 + torch.tensor([[3.0, 4.0]])]
    for epoch, w in zip((0, 10, 2), states[:1] + states[2:] + states[1:2]):
        torch.save({"layer.conv.weight": w, "layer.conv.bias": torch.ones(1), "other.weight": torch.zeros(2, 2)},
                   tmp_path / f"epoch_{epoch:02d}.pth")
    series = checkpoint_series(tmp_path)
    assert [e for e, _ in series] == [0, 2, 10]
    dist = weight_distances([p for _, p in series], "layer")
    # epoch 0 → 2: ‖(3, 4)‖/‖(3, 4)‖ = 1; epoch 2 → 10: no move
    np.testing.assert_allclose(dist, [0.0, 1.0, 1.0])
    assert layer_weights({"layer.conv.weight": w0}, "layer.conv.weight").tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="no weights of layer"):
        weight_distances([p for _, p in series], "missing")


def test_trajectory_metrics_follow_the_definitions():
    # 2 images, 3 checkpoints, 1×3 maps; foreground = first two cells; background cell at −2.0 always.
    fg = np.array([[[True, True, False]]] * 2)
    maps = np.array([
        [[[-2.5, -2.0, -2.0]], [[-2.0, -2.0, -2.0]]],   # ckpt 0: image 0 has 1 fg concept
        [[[-2.5, -2.5, -2.0]], [[-2.5, -2.0, -2.0]]],   # ckpt 1: image 0 has 2, image 1 has 1
        [[[-2.0, -2.5, -2.0]], [[-2.5, -2.5, -2.0]]],   # ckpt 2 (last): image 0 has 1, image 1 has 2
    ])
    dist = np.array([0.0, 0.5, 2.0])
    result = trajectory_metrics(maps, fg, dist, (0, 1, 2))
    assert result.best.tolist() == [1, 2]                # argmax N_fg
    assert result.metrics["D_mean"].value == pytest.approx((0.5 + 2.0) / 2)
    assert result.metrics["D_var"].value == pytest.approx(np.var([0.5, 2.0]))
    # ρ: image 0: |S_last| = 1, |∪| = 2 → 0.5; image 1: 2 / 2 = 1
    np.testing.assert_allclose(result.rho_per_image, [0.5, 1.0])
    assert result.metrics["rho"].value == pytest.approx(0.75)
    same = trajectory_differences((maps, dist), (maps, dist), fg)
    assert same["rho"].value == 0.0


def test_a_run_needs_two_checkpoints(tmp_path):
    torch.save({"a.weight": torch.ones(2, 2)}, tmp_path / "epoch_01.pth")
    with pytest.raises(ValueError, match="at least 2"):
        checkpoint_series(tmp_path)
