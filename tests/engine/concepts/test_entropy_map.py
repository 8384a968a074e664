"""The σ optimisation (METHODS §6): concept cells where the model looks, the entropy target and the λ
schedule, seeding, and the input gradients it runs on."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kdx_engine.concepts.concept_counts import count_concepts
from kdx_engine.concepts.entropy_map import HALF_LOG_2PI_E, EntropySettings, entropy_map
from kdx_engine.jobs import Cancelled, Progress
from kdx_engine.models import INPUT
from tests.conftest import backend_for

SIZE = 16


class RegionReader(nn.Module):
    """A classifier whose ``features`` read only the pixels of ``region`` (rows, cols slices)."""

    def __init__(self, region: tuple[slice, slice], seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[..., region[0], region[1]] = 1.0
        self.register_buffer("mask", mask)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        f = self.features(x * self.mask)
        return self.head(f.mean((2, 3)))


class Blind(nn.Module):
    """Features that ignore the input: the feature error is zero, only the entropy term acts."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        f = self.features(torch.zeros_like(x))
        return self.head(f.mean((2, 3)))


def test_concept_cells_fall_only_in_the_region_the_model_reads():
    region = (slice(0, 8), slice(8, 16))  # top-right quadrant: cells rows 0-3, cols 4-7 on a 8×8 grid
    backend = backend_for(RegionReader(region), 3, SIZE)
    settings = EntropySettings(grid=8, draws=32, steps=80)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    result = entropy_map(backend, x, "features", settings)
    inside = np.zeros((8, 8), dtype=bool)
    inside[0:4, 4:8] = True
    counts = count_concepts(result.entropy[None], inside[None])
    assert counts.n_fg[0] >= 8  # the region is found …
    assert counts.n_bg[0] == 0  # … and nothing else is a concept
    # the unread cells all end with the same entropy (only the λ term moves them)
    assert np.ptp(result.entropy[~inside]) < 1e-6
    assert result.entropy[inside].max() < result.entropy[~inside].min()


def _analytic_mean_entropy(settings: EntropySettings, lams):
    """Blind model: σ_{t+1} = clamp(σ_t + lr·λ_t/(G² σ_t)), the same for every cell."""
    sigma, means = settings.sigma_init, []
    for lam in lams:
        sigma = min(max(sigma + settings.lr * lam / settings.grid ** 2 / sigma, settings.sigma_min), settings.sigma_max)
        means.append(math.log(sigma) + HALF_LOG_2PI_E)
    return np.asarray(means)


def test_lambda_grows_at_step_59_when_the_entropy_is_still_below_target():
    backend = backend_for(Blind(), 2, SIZE)
    settings = EntropySettings(grid=4, draws=2, lr=1e-6)  # too slow to reach −2.8 by step 59
    result = entropy_map(backend, torch.zeros(1, 3, SIZE, SIZE), "features", settings)
    expected_lams = [6.0] * 59 + [9.0] * 21
    assert result.lam.tolist() == expected_lams
    np.testing.assert_allclose(result.mean_entropy, _analytic_mean_entropy(settings, expected_lams), atol=1e-5)
    assert result.mean_entropy[-1] < settings.target
    assert result.step == 80  # the closest to the target is the last one while it is still below


def test_lambda_stays_when_the_target_is_passed_before_step_59_and_the_closest_step_is_kept():
    backend = backend_for(Blind(), 2, SIZE)
    settings = EntropySettings(grid=4, draws=2, lr=2e-5)
    result = entropy_map(backend, torch.zeros(1, 3, SIZE, SIZE), "features", settings)
    assert set(result.lam.tolist()) == {6.0}
    expected = _analytic_mean_entropy(settings, [6.0] * 80)
    np.testing.assert_allclose(result.mean_entropy, expected, atol=1e-5)
    assert expected[58] > settings.target
    kept = int(np.argmin(np.abs(expected - settings.target))) + 1
    assert result.step == kept and 1 < kept < 80
    assert abs(result.entropy.mean() - expected[kept - 1]) < 1e-5
    assert abs(result.entropy.mean() - settings.target) < abs(expected[kept] - settings.target) + 1e-12


def test_sigma_stays_in_its_clamp():
    backend = backend_for(Blind(), 2, SIZE)
    settings = EntropySettings(grid=2, draws=2, lr=1.0, steps=5)
    result = entropy_map(backend, torch.zeros(1, 3, SIZE, SIZE), "features", settings)
    assert result.sigma.max() == pytest.approx(1.0)
    assert result.mean_entropy.max() == pytest.approx(HALF_LOG_2PI_E, abs=1e-6)


def test_same_seed_same_map_other_seed_other_map():
    backend = backend_for(RegionReader((slice(0, 16), slice(0, 16))), 3, SIZE)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    a = entropy_map(backend, x, "features", EntropySettings(grid=4, draws=8, steps=10, lr=1e-3, seed=1))
    b = entropy_map(backend, x, "features", EntropySettings(grid=4, draws=8, steps=10, lr=1e-3, seed=1))
    c = entropy_map(backend, x, "features", EntropySettings(grid=4, draws=8, steps=10, lr=1e-3, seed=2))
    np.testing.assert_array_equal(a.entropy, b.entropy)
    assert np.abs(a.entropy - c.entropy).max() > 1e-6


def test_a_cancel_stops_the_optimisation():
    backend = backend_for(Blind(), 2, SIZE)
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        entropy_map(backend, torch.zeros(1, 3, SIZE, SIZE), "features", EntropySettings(steps=3), progress)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="sigma"):
        EntropySettings(sigma_init=2.0)
    with pytest.raises(ValueError, match="draws"):
        EntropySettings(draws=0)


def test_input_vjp_matches_autograd():
    module = RegionReader((slice(0, 16), slice(0, 16)))
    backend = backend_for(module, 3, SIZE)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    forward = backend.forward(x, layers=["features"], grad_layer=INPUT)
    cotangent = torch.randn_like(forward.activations["features"])
    got = forward.vjp({"features": cotangent})
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(module.features(leaf * module.mask), leaf, cotangent)
    torch.testing.assert_close(got, expected)
    logits_grad = forward.vjp({"logits": torch.ones(2, 3)})
    (expected_logits,) = torch.autograd.grad(module(leaf).sum(), leaf)
    torch.testing.assert_close(logits_grad, expected_logits)
