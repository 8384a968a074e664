"""The same weights in three formats, without sidecars, get the same preprocessing and so the same
predictions and maps: a torchvision state_dict (family preset), its TorchScript trace and its ONNX
export (the ImageNet fallback, which is torchvision's resize 256 / crop 224)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_resnet18
from kdx_engine.comparison import ComparisonModel, compare_image
from kdx_engine.data import LoadedImage
from kdx_engine.models import load_model

from onnx_exports import export_onnx


@pytest.fixture(scope="module")
def three_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    model = make_resnet18(num_classes=10, seed=3)
    torch.save(model.state_dict(), folder / "r18.pth")
    torch.jit.trace(model, torch.zeros(1, 3, 224, 224)).save(str(folder / "r18.ts"))
    export_onnx(model, folder / "r18.onnx", 224, "legacy")
    return [folder / name for name in ("r18.pth", "r18.ts", "r18.onnx")]


def test_every_format_gets_the_same_preprocessing_and_the_same_comparison(three_files, quiet):
    backends = [load_model(path) for path in three_files]
    geometry = {(b.info.preprocessing.input_size, b.info.preprocessing.resize, b.info.preprocessing.mean,
                 b.info.preprocessing.std) for b in backends}
    assert geometry == {(224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
    rng = np.random.default_rng(0)
    image = LoadedImage(Path("photo.png"), rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (), None, "sha")
    layers = {"pytorch": "layer4", "torchscript": "layer4"}
    results = []
    for backend in backends:
        layer = layers.get(backend.info.backend, None)
        if layer is None:  # ONNX: the layer's tensor as the structural probe names it
            from kdx_engine.models import default_target_layer, probe_layers

            layer = default_target_layer(probe_layers(backend))
        results.append(compare_image({"teacher": ComparisonModel(backend, layer)}, image, panels=("teacher",)))
    first = results[0]
    for other in results[1:]:
        np.testing.assert_allclose(other.predictions["teacher"].probabilities, first.predictions["teacher"].probabilities,
                                   atol=1e-4)
        a, b = first.panels["teacher"].values, other.panels["teacher"].values
        assert np.array_equal(np.isnan(a), np.isnan(b))  # the same crop, undone on the same pixels
        finite = np.isfinite(a)
        np.testing.assert_allclose(b[finite], a[finite], atol=1e-4 * max(1.0, float(np.nanmax(a))))
