"""A model's own failure, whatever its type, is that model's panel message; a bug of KDX's own is not
dressed up as one (issue 25): backends raise one ModelRunError."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import backend_for
from kdx_engine.comparison import ComparisonModel, compare_image
from kdx_engine.comparison import comparison as comparison_module
from kdx_engine.data.images import LoadedImage
from kdx_engine.models.backend import ModelRunError


class Fragile(nn.Module):
    """Runs on its first call (the probe), then fails the way user code fails: an IndexError."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.fail = False

    def forward(self, x):
        if self.fail:
            return [][0]
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _models(fragile):
    torch.manual_seed(0)
    healthy = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 3)).eval()
    return {"teacher": ComparisonModel(backend_for(healthy, 3, 32), "1"),
            "student": ComparisonModel(backend_for(fragile.eval(), 3, 32), "conv")}


IMAGE = LoadedImage(path=Path("x.png"), rgb=np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_a_models_own_index_error_is_its_panels_message():
    fragile = Fragile()
    fragile.fail = True
    with pytest.raises(ModelRunError, match="list index out of range"):
        backend_for(fragile, 3, 32).logits(torch.zeros(1, 3, 32, 32))
    comparison = compare_image(_models(fragile), IMAGE, panels=("input", "teacher", "student"))
    assert comparison.panels["teacher"].values is not None
    assert comparison.panels["student"].values is None
    assert "gradcam failed: list index out of range" in comparison.panels["student"].message


def test_a_bug_of_our_own_is_not_reported_as_a_model_failure(monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("a bug in KDX")

    monkeypatch.setattr(comparison_module, "maps_on_grid", broken)
    with pytest.raises(IndexError, match="a bug in KDX"):
        compare_image(_models(Fragile()), IMAGE, panels=("input", "teacher", "student"))
