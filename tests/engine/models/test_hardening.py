"""Engine-level checks of issue 11: unknown layers, gradients onnx-ad cannot build, non-finite
weights and logits, sidecar validation, safetensors headers, and the architecture listing."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import make_cifar
from kdx_engine.cams import CAM_METHODS, ClassTarget
from kdx_engine.models import (
    PENULTIMATE, LayerError, ModelLoadError, NonFiniteLogitsError, Preprocessing, UnknownLayerError,
    architecture_families, check_finite_logits, load_model, read_sidecar,
)
from kdx_engine.models.backend import shorten_names
from kdx_engine.models.onnx_heads import GradientUnavailable
from onnx_exports import tiny_onnx


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backends")
    module = make_cifar("resnet8", num_classes=3)
    torch.save(module.state_dict(), folder / "r8.pth")
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(folder / "r8.pt"))
    (folder / "r8.pt.kdx.json").write_text(json.dumps({"input_size": 32}))
    return {"pytorch": load_model(folder / "r8.pth"), "torchscript": load_model(folder / "r8.pt"),
            "onnx": load_model(tiny_onnx(folder / "tiny.onnx"))}


@pytest.mark.parametrize("kind", ["pytorch", "torchscript", "onnx"])
@pytest.mark.parametrize("how", ["layers", "grad_layer", "replaced"])
def test_unknown_layer_is_a_value_error_listing_the_valid_layers(backends, kind, how):
    backend = backends[kind]
    size = backend.info.preprocessing.input_size
    x = torch.zeros(1, 3, size, size)
    with pytest.raises(UnknownLayerError) as error:
        if how == "layers":
            backend.forward(x, layers=["nope"])
        elif how == "grad_layer":
            backend.forward(x, grad_layer="nope")
        else:
            backend.logits_with_replaced(x, "nope", torch.zeros(1, 4))
    exc = error.value
    assert isinstance(exc, KeyError) and isinstance(exc, ValueError)
    message = str(exc)
    assert message.startswith(f"{backend.info.path.rsplit('/', 1)[-1]}: model has no ")
    assert "'nope'" in message and not message.startswith('"')
    valid = [name for name in backend.layer_names() if name != PENULTIMATE][:3]
    assert all(name in message for name in valid)


def test_long_layer_lists_are_shortened():
    names = [f"block{i}" for i in range(40)]
    text = shorten_names(names)
    assert text.startswith("block0, block1") and "…" in text and text.endswith("block39 (40 in all)")
    assert str(LayerError("plain message")) == "plain message"


@pytest.mark.parametrize("head,op", [("loop", "Loop"), ("contrib", "com.microsoft.FastGelu")])
def test_heads_onnx_ad_cannot_do_name_the_op_and_gradient_free_methods_still_run(tmp_path, head, op):
    backend = load_model(tiny_onnx(tmp_path / f"{head}.onnx", head))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    targets = [ClassTarget(0), ClassTarget(1)]
    with pytest.raises(GradientUnavailable) as error:
        CAM_METHODS["gradcam"](backend, layer="relu")(x, targets)
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert message.startswith(f"{head}.onnx: ") and op in message
    assert "scorecam" in message and "ablationcam" in message
    for method in ("scorecam", "ablationcam"):
        maps = CAM_METHODS[method](backend, layer="relu")(x, targets).normalised()
        assert maps.shape == (2, 8, 8) and torch.isfinite(maps).all()


def test_gradients_after_the_loop_still_work(tmp_path):
    backend = load_model(tiny_onnx(tmp_path / "loop.onnx", "loop"))
    maps = CAM_METHODS["gradcam"](backend, layer="looped")(torch.randn(1, 3, 8, 8), [ClassTarget(0)])
    assert torch.isfinite(maps.normalised()).all()


def test_non_finite_parameters_are_refused_on_load(tmp_path):
    state = make_cifar("resnet8", num_classes=3).state_dict()
    state["layer1.0.bn1.running_var"][:2] = float("inf")
    torch.save(state, tmp_path / "inf.pth")
    with pytest.raises(ModelLoadError, match=r"^inf\.pth: 2 of [\d,]+ parameters are NaN or inf "
                                             r"\(tensor 'layer1\.0\.bn1\.running_var'\)"):
        load_model(tmp_path / "inf.pth")


def test_check_finite_logits_names_the_model_and_the_images(backends):
    check_finite_logits(torch.zeros(2, 3), backends["pytorch"])
    logits = torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [0.0, float("inf")]])
    with pytest.raises(NonFiniteLogitsError, match=r"^r8\.pth: NaN or inf logits for 2 of 3 image\(s\) \(b\.png, c\.png\)"):
        check_finite_logits(logits, backends["pytorch"], ["a.png", "b.png", "c.png"])
    with pytest.raises(ValueError, match=r"^student\.onnx: .* \(#1, #2\)"):
        check_finite_logits(logits, "/models/student.onnx")


@pytest.mark.parametrize("field,value", [
    ("input_size", 0), ("input_size", -3), ("input_size", 2.5), ("input_size", "224"), ("input_size", True),
    ("input_size", 100000), ("resize", 0), ("resize", 1.5), ("mean", [0.1, 0.2]), ("mean", [0.1, 0.2, math.inf]),
    ("mean", "abc"), ("std", [0.2, 0.0, 0.2]), ("std", [0.2, -1, 0.2]), ("class_names", [1, 2]),
    ("class_names", "cats"), ("version", "1"), ("architecture", 3),
])
def test_bad_sidecar_fields_name_the_file_and_the_field(tmp_path, field, value):
    model = tmp_path / "m.pth"
    (tmp_path / "m.pth.kdx.json").write_text(json.dumps({"input_size": 32, field: value}))
    with pytest.raises(ValueError, match=rf"^m\.pth\.kdx\.json: .*'{field}'"):
        read_sidecar(model)


def test_good_sidecar_values_still_load_and_preprocessing_checks_itself(tmp_path):
    (tmp_path / "m.pth.kdx.json").write_text(json.dumps(
        {"input_size": 1536, "resize": None, "mean": [0, 0.5, 1], "std": [1, 1, 2], "class_names": ["a"]}))
    config = read_sidecar(tmp_path / "m.pth")
    assert config.input_size == 1536 and config.mean == (0.0, 0.5, 1.0) and config.class_names == ("a",)
    assert Preprocessing(input_size=np.int64(32)).input_size == 32
    with pytest.raises(ValueError, match="'std'"):
        Preprocessing(std=(1.0, 0.0, 1.0))


def test_architecture_families_list_every_architecture_with_a_fingerprint():
    summaries = {s.name: s for s in architecture_families()}
    resnet8 = summaries["resnet8"]
    assert resnet8.family and resnet8.num_parameters == sum(
        p.numel() for p in make_cifar("resnet8", num_classes=resnet8.num_classes).parameters())
    assert resnet8.first_parameter == ("conv1.weight", (16, 3, 3, 3))
    assert resnet8.last_parameter[0] == "fc.bias" and resnet8.last_parameter[1] == (resnet8.num_classes,)
    assert "parameters" in resnet8.description and "conv1.weight 16×3×3×3" in resnet8.description
    assert json.loads(json.dumps(resnet8.to_json()))["name"] == "resnet8"
    assert "resnet18" in summaries and summaries["resnet18"].input_size == 224
