"""The engine's comparison: maps on the original image's pixel grid whatever each model's resize and
crop, one forward pass per model and image, and the panels the window and the exports draw."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import backend_for, make_cifar
from float32_tolerances import pearson_tolerance_within
from kdx_engine.comparison import (
    ComparisonModel,
    ComparisonSettings,
    UniCamCache,
    compare_image,
    crop_window,
    gallery_predictions,
    image_grid,
    maps_on_grid,
)
from kdx_engine.data import LoadedImage
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.unicam import ReferenceSet


class Brightness(nn.Module):
    """Class 0's logit is the summed brightness of a 4×4-pooled feature map: its Grad-CAM is that map,
    so it peaks wherever the image is brightest."""

    def __init__(self):
        super().__init__()
        self.features = nn.AvgPool2d(4)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        feature = self.features(x.sum(dim=1, keepdim=True))
        return self.fc(feature.flatten(2).mean(dim=2))


def brightness_model(preprocessing: Preprocessing) -> ComparisonModel:
    backend = backend_for(Brightness().eval(), num_classes=2)
    info = dataclasses.replace(backend.info, preprocessing=preprocessing)
    backend.info = info
    return ComparisonModel(backend, "features")


def spot_image(height: int, width: int, row: int, col: int, name: str = "spot.png") -> LoadedImage:
    rgb = np.full((height, width, 3), 20, dtype=np.uint8)
    rgb[row - 5:row + 5, col - 5:col + 5] = 250
    mask = np.zeros((height, width), dtype=bool)
    mask[row - 5:row + 5, col - 5:col + 5] = True
    return LoadedImage(Path(name), rgb, (), mask, f"sha-{name}-{row}-{col}")


UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_a_map_without_crop_equals_a_bilinear_resize_to_the_input():
    low = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    placed = maps_on_grid(low, (56, 56), Preprocessing(input_size=56), image_grid(56, 56))
    expected = F.interpolate(low[:, None].double(), size=(56, 56), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(placed, expected.numpy(), atol=1e-12)


def test_outside_the_crop_a_map_is_undefined():
    pre = Preprocessing(input_size=48, resize=64, **UNIT)
    grid = image_grid(80, 120)
    rows, cols = crop_window((80, 120), pre, grid)
    placed = maps_on_grid(torch.ones(1, 12, 12), (80, 120), pre, grid)[0]
    assert np.isfinite(placed[rows, cols]).all()
    assert np.isnan(placed[:, :cols.start]).all() and np.isnan(placed[:, cols.stop:]).all()
    # resize 80×120 → 64×96, crop 48: 48/64 of each side is kept
    assert (rows.stop - rows.start) == pytest.approx(80 * 48 / 64, abs=1)
    assert (cols.stop - cols.start) == pytest.approx(120 * 48 / 96, abs=1)


def centre_of_top(values: np.ndarray, share: float = 0.02) -> np.ndarray:
    """The mean (row, col) of the map's top ``share`` of pixels."""
    finite = np.where(np.isfinite(values), values, -np.inf)
    top = np.argsort(finite.ravel())[-max(1, int(share * values.size)):]
    return np.array(np.unravel_index(top, values.shape)).mean(axis=1)


@pytest.mark.parametrize("spot", [(25, 45), (60, 78), (30, 70)])
def test_maps_of_differently_cropped_models_peak_on_the_same_image_pixels(spot):
    image = spot_image(80, 120, *spot)
    cropped = brightness_model(Preprocessing(input_size=48, resize=64, **UNIT))
    squeezed = brightness_model(Preprocessing(input_size=48, resize=None, **UNIT))
    result = compare_image({"teacher": cropped, "student": squeezed}, image,
                           settings=ComparisonSettings(target_rule="class", class_index=0), panels=("teacher", "student"))
    centre = np.array(spot) - 0.5
    for role in ("teacher", "student"):
        values = result.panels[role].values
        assert values.shape == (80, 120)
        assert np.abs(centre_of_top(values) - centre).max() < 2.5, role
    # the same map merely stretched over the image (crop not undone) lands elsewhere
    naive = F.interpolate(torch.from_numpy(np.nan_to_num(result.panels["teacher"].values[:, 30:90]))[None, None],
                          size=(80, 120), mode="bilinear")[0, 0].numpy()
    assert np.abs(centre_of_top(naive) - centre).max() > 5
    assert result.map_metrics["pearson"] > 0.8
    area = image.mask.mean()
    assert result.map_metrics["energy_a"] > 10 * area and result.map_metrics["energy_b"] > 10 * area
    assert result.map_metrics["share_of_image"] == pytest.approx(0.75 * 0.5, abs=0.02)  # the crop: 48/64 × 48/96
    assert any("preprocesses differently" in note for note in result.notes)


def test_the_input_panel_is_the_original_image():
    image = spot_image(80, 120, 40, 60)
    result = compare_image({"teacher": brightness_model(Preprocessing(input_size=48, resize=64, **UNIT))}, image)
    np.testing.assert_array_equal(result.panels["input"].values, image.rgb)
    assert result.panels["student"].message.startswith("no Student model loaded")
    assert result.panels["difference"].message == "needs the Student map"


class CountingBackend:
    """Counts forward passes of a wrapped backend."""

    def __init__(self, backend):
        self._backend, self.forwards = backend, 0

    def forward(self, x, layers=(), grad_layer=None):
        self.forwards += x.shape[0]
        return self._backend.forward(x, layers, grad_layer)

    def logits(self, x):
        return self.forward(x).logits

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _cifar_model(seed):
    backend = CountingBackend(backend_for(make_cifar("resnet8", num_classes=3, seed=seed), 3, input_size=32))
    return ComparisonModel(backend, "layer3")


def _noise_images(count, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return [LoadedImage(Path(f"img{i}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (), None,
                        f"sha{seed}-{i}") for i in range(count)]


def test_a_whole_comparison_costs_one_forward_per_model_once_references_are_cached():
    models = {role: _cifar_model(seed) for seed, role in enumerate(("teacher", "student", "base"))}
    reference = ReferenceSet.from_images(_noise_images(7, seed=1), [0, 1, 2, 0, 1, 2, 0], n=8)
    cache = UniCamCache()
    query, second = _noise_images(2, seed=2)
    compare_image(models, query, reference=reference, unicam_cache=cache)
    before = {role: m.backend.forwards for role, m in models.items()}
    result = compare_image(models, second, reference=reference, unicam_cache=cache)
    assert {role: m.backend.forwards - before[role] for role, m in models.items()} == \
           {"teacher": 1, "student": 1, "base": 1}
    for key in ("teacher", "student", "base", "distilled", "residual", "difference"):
        assert result.panels[key].values is not None, (key, result.panels[key].message)
    assert result.panels["distilled"].title == "Distilled (S|B)"
    assert result.reference["n"] == 8 and result.reference["hashes"] == reference.hashes


def test_targets_come_from_the_same_pass_and_follow_the_rule():
    models = {"teacher": _cifar_model(0)}
    image = _noise_images(1)[0]
    result = compare_image(models, image, settings=ComparisonSettings(target_rule="class", class_index=2),
                           panels=("teacher",))
    assert result.predictions["teacher"].target == 2
    assert result.panels["teacher"].details["target_rule"] == "class"
    assert "target 2 (class)" in result.panels["teacher"].subtitle


def test_a_failing_model_becomes_the_panels_message():
    models = {"teacher": ComparisonModel(_cifar_model(0).backend, "no_such_layer")}
    result = compare_image(models, _noise_images(1)[0], panels=("teacher",))
    assert result.panels["teacher"].values is None
    assert "gradcam failed" in result.panels["teacher"].message
    assert result.predictions["teacher"].probabilities.shape == (3,)  # the prediction still stands


@pytest.mark.numerics
def test_gallery_predictions_match_the_comparison():
    models = {role: _cifar_model(seed) for seed, role in enumerate(("teacher", "student"))}
    images = _noise_images(5, seed=4)
    records = gallery_predictions(models, images, [None] * 5, ComparisonSettings(), batch_size=2)
    for image, record in zip(images, records):
        single = compare_image(models, image, panels=("teacher", "student"))
        assert record.classes == {r: p.predicted for r, p in single.predictions.items()}
        # the gallery runs batches of 2, compare_image one image: r of maps from two float32 paths
        tolerance = pearson_tolerance_within(single.panels["teacher"].values, single.panels["student"].values)
        assert record.correlation == pytest.approx(single.map_metrics["pearson"], abs=tolerance)
