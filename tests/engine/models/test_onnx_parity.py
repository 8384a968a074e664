"""An ONNX export explains like its PyTorch original: logits, penultimate features and every CAM method
agree within 1e-4 (maps after the same normalisation), for both exporters."""
import pytest
import torch
import torchvision

from conftest import backend_for, make_resnet18
from kdx_engine.cams import CAM_METHODS, ClassTarget
from kdx_engine.models import PENULTIMATE, default_target_layer, load_model, probe_layers
from kdx_engine.models.registry import get_architecture
from onnx_exports import EXPORTERS, export_onnx

TOLERANCE = 1e-4
NUM_CLASSES = 10


def _cifar(name):
    def build():
        torch.manual_seed(0)
        return get_architecture(name).build(NUM_CLASSES).eval()
    return build


def _torchvision_mobilenet_v2():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=NUM_CLASSES).eval()


# name: (builder, input size, CAM layer). vgg8 is explained at block3: its block4 output is pre-ReLU with
# channel sums down to 1e-3, where XGrad-CAM's division leaves PyTorch float32 itself 4e-4 from float64.
MODELS = {
    "resnet8": (_cifar("resnet8"), 32, "layer3"),
    "wrn_16_1": (_cifar("wrn_16_1"), 32, "block3"),
    "vgg8": (_cifar("vgg8"), 32, "block3"),
    "MobileNetV2": (_cifar("MobileNetV2"), 32, "blocks.6"),
    "resnet18": (make_resnet18, 64, "layer4"),
    "mobilenet_v2": (_torchvision_mobilenet_v2, 64, "features.17"),
}
_cache: dict = {}


def original_and_export(name, exporter, tmp_path_factory):
    """The PyTorch backend and the ONNX backend of the same model (exported once per session)."""
    key = (name, exporter)
    if key not in _cache:
        build, size, _ = MODELS[name]
        module = build()
        path = export_onnx(module, tmp_path_factory.mktemp(f"{name}_{exporter}") / f"{name}.onnx", size, exporter)
        _cache[key] = (backend_for(module, NUM_CLASSES, size), load_model(path))
    return _cache[key]


def images_for(name, count=2):
    size = MODELS[name][1]
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(7))


def assert_same_maps(original, onnx_backend, method, layer, x):
    targets = [ClassTarget(int(k)) for k in original.logits(x).argmax(dim=1)]
    expected = CAM_METHODS[method](original, layer=layer)(x, targets)
    got = CAM_METHODS[method](onnx_backend, layer=layer)(x, targets)
    torch.testing.assert_close(got.normalised(), expected.normalised(), atol=TOLERANCE, rtol=0)
    assert got.notes == expected.notes


def assert_same_outputs(original, onnx_backend, x):
    expected = original.forward(x, [PENULTIMATE])
    got = onnx_backend.forward(x, [PENULTIMATE])
    torch.testing.assert_close(got.logits, expected.logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(got.activations[PENULTIMATE], expected.activations[PENULTIMATE], atol=TOLERANCE, rtol=0)


@pytest.mark.numerics
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_resnet8_export_explains_like_the_original(tmp_path_factory, exporter, method):
    original, exported = original_and_export("resnet8", exporter, tmp_path_factory)
    x = images_for("resnet8")
    assert_same_outputs(original, exported, x)
    assert_same_maps(original, exported, method, "layer3", x)


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_cam_method_matches_on_a_legacy_resnet8_export(tmp_path_factory, method):
    original, exported = original_and_export("resnet8", "legacy", tmp_path_factory)
    assert_same_maps(original, exported, method, "layer2", images_for("resnet8"))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_automatic_target_layer_is_the_original_one(tmp_path_factory, exporter):
    original, exported = original_and_export("resnet8", exporter, tmp_path_factory)
    assert default_target_layer(probe_layers(exported)) == default_target_layer(probe_layers(original)) == "layer3"


@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_full_matrix_every_method_every_model_both_exporters(tmp_path_factory, name, exporter):
    original, exported = original_and_export(name, exporter, tmp_path_factory)
    x = images_for(name)
    assert_same_outputs(original, exported, x)
    for method in CAM_METHODS:
        assert_same_maps(original, exported, method, MODELS[name][2], x)
