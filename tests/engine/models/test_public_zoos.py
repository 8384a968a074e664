"""State_dicts of the public zoos people distil with, saved as their home code saves them, are recognised,
give the logits of the model built by hand and a Grad-CAM equal to pytorch-grad-cam's on it; a state_dict
that fits nothing is refused naming its tensors, parameters and the closest families with what differs."""
from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from kdx_engine.cams import ClassTarget, cam_method
from kdx_engine.checkpoints import ArchitectureError
from kdx_engine.models import ModelLoadError, fingerprint, load_model, registered_architectures
from kdx_engine.models.architectures.cifar_densenet import CifarDenseNetBC
from kdx_engine.models.architectures.cifar_preresnet import PreResNet
from kdx_engine.models.architectures.cifar_resnet_option_a import OptionAResNet
from kdx_engine.models.architectures.efficientnet_lite import EfficientNetLite
from kdx_engine.models.architectures.imagenet_mobilenetv1 import MobileNetV1
from kdx_engine.models.architectures.tiny_imagenet_mobilenetv2 import TinyImageNetMobileNetV2
from kdx_engine.models.architectures.torchdistill_wrn import TorchdistillWideResNet


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, BatchNorm statistics included (so evaluation mode matters)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            elif tensor.dim() > 1:
                values *= (2.0 / max(tensor[0].numel(), 1)) ** 0.5
            else:
                values *= 0.1
            tensor.copy_(values + (1.0 if name.endswith(("bn1.weight", "bn2.weight")) else 0.0))
    return model.eval()


def _without_batch_counters(state):
    """Checkpoints from PyTorch < 0.4.1 have no num_batches_tracked."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


# name: (builder, registered name, input size, Grad-CAM layer, how the home code saves it)
def _save_akamaster(model, path):
    state = {f"module.{k}": v for k, v in _without_batch_counters(model.state_dict()).items()}  # DataParallel
    torch.save({"epoch": 200, "state_dict": state, "best_prec1": 93.39}, path)


def _save_bare(model, path):
    torch.save(model.state_dict(), path)


def _save_torchdistill(model, path):
    torch.save({"model": model.state_dict(), "optimizer": {}, "best_value": 0.95,
                "args": argparse.Namespace(config="wrn.yaml")}, path)


def _save_mdistiller(model, path):
    torch.save({"epoch": 240, "model": {f"module.student.{k}": v for k, v in model.state_dict().items()},
                "best_acc": 0.7}, path)


ZOOS = {
    "akamaster_resnet20": (lambda: OptionAResNet(20, 10), "resnet20_option_a", 32, "layer3", _save_akamaster,
                           "resnet20-12fca82f.th"),
    "akamaster_resnet56": (lambda: OptionAResNet(56, 10), "resnet56_option_a", 32, "layer2", _save_akamaster,
                           "resnet56-4bfd9763.th"),
    "preresnet20": (lambda: PreResNet(20, 10), "preresnet20", 32, "layer3", _save_bare, "preresnet20.pt"),
    "preresnet56": (lambda: PreResNet(56, 100), "preresnet56", 32, "layer3", _save_bare, "preresnet56.pt"),
    "torchdistill_wrn16_8": (lambda: TorchdistillWideResNet(16, 8, 10), "wide_resnet16_8", 32, "layer3",
                             _save_torchdistill, "cifar10-wide_resnet16_8.pt"),
    "densenet_bc_k12_depth100": (lambda: CifarDenseNetBC(12, 100, 100), "densenet_bc_k12_depth100", 32,
                                 "features.denseblock3", _save_torchdistill, "cifar100-densenet_bc_k12_depth100.pt"),
    "efficientnet_lite0": (lambda: EfficientNetLite(1.0, 1.0, 0.2, 1000), "efficientnet_lite0", 96, "_blocks.15",
                           _save_bare, "efficientnet_lite0.pth"),
    "mdistiller_mobilenetv1": (lambda: MobileNetV1(1000), "MobileNetV1", 224, "model.13", _save_bare,
                               "mobilenetv1.pth"),
    "mdistiller_tiny_mobilenetv2": (lambda: TinyImageNetMobileNetV2(200), "mobilenetv2_tinyimagenet", 64, "conv1",
                                    _save_mdistiller, "student_best"),
}


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    """Each zoo's model built by hand with random weights, saved as its home code saves it."""
    folder = tmp_path_factory.mktemp("zoos")
    built = {}
    for key, (builder, _, _, _, save, filename) in ZOOS.items():
        torch.manual_seed(0)
        model = _randomised(builder())
        save(model, folder / filename)
        built[key] = (model, folder / filename)
    return built


@pytest.mark.parametrize("key", list(ZOOS))
def test_public_zoo_state_dict_is_recognised_with_the_logits_of_the_model_built_by_hand(zoo_files, key):
    _, name, size, _, _, _ = ZOOS[key]
    model, path = zoo_files[key]
    backend = load_model(path)
    assert backend.info.architecture == name
    assert f"architecture recognised from parameter names and shapes: {name}" in backend.info.notes
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(backend.logits(x), expected, rtol=1e-5, atol=1e-5)
    assert backend.info.num_classes == expected.shape[1]


@pytest.mark.parametrize("key", list(ZOOS))
def test_public_zoo_grad_cam_equals_pytorch_grad_cam(zoo_files, key):
    """The layer's Grad-CAM (channel weights × activations, ReLU) as pytorch-grad-cam computes it on the
    model built by hand, against KDX's on the loaded file, relative to the map's maximum. Compared at the
    layer's resolution: the two upsample differently (cv2 after normalising, KDX before)."""
    _, _, size, layer, _, _ = ZOOS[key]
    model, path = zoo_files[key]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()  # the predicted class: random weights give it a visible map
    reference = copy.deepcopy(model)
    with GradCAM(model=reference, target_layers=[dict(reference.named_modules())[layer]]) as cam:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(k) for k in classes])
        activations = cam.activations_and_grads.activations[0].numpy()
        gradients = cam.activations_and_grads.gradients[0].numpy()
        expected = np.maximum(cam.get_cam_image(x, cam.target_layers[0], None, activations, gradients, False), 0)
    result = cam_method("gradcam")(load_model(path), layer=layer)(x, [ClassTarget(k) for k in classes])
    got = result.low_res.numpy()
    assert got.shape == expected.shape and expected.max() > 0
    np.testing.assert_allclose(got, expected, atol=1e-5 * float(expected.max()), rtol=0)


PRESETS = {  # name: (input size, resize, first mean, interpolation)
    "resnet56_option_a": (32, None, 0.485, "bilinear"),  # the reference script normalises with ImageNet's statistics
    "preresnet110": (32, None, 0.5071, "bilinear"),
    "wide_resnet28_10": (32, None, 0.4914, "bilinear"),
    "densenet_bc_k12_depth100": (32, None, 0.4914, "bilinear"),
    "efficientnet_lite2": (260, 292, 127 / 255, "bicubic"),
    "efficientnet_lite4": (300, 332, 127 / 255, "bicubic"),
    "MobileNetV1": (224, 256, 0.485, "bilinear"),
    "mobilenetv2_tinyimagenet": (64, None, 0.4802, "bilinear"),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_zoo_carries_the_preprocessing_it_was_trained_with(name):
    preset = registered_architectures()[name].preset
    size, resize, mean, interpolation = PRESETS[name]
    assert (preset.input_size, preset.resize, preset.interpolation) == (size, resize, interpolation)
    assert preset.mean[0] == pytest.approx(mean, abs=1e-4)
    assert preset.architecture == name and preset.source == "family-preset"


# Parameter counts of the home definitions (published with them), at their usual class counts.
COUNTS = {
    ("resnet20_option_a", 10): 269_722, ("resnet56_option_a", 10): 853_018,
    ("wide_resnet28_10", 10): 36_479_194, ("wide_resnet40_4", 10): 8_949_210,
    ("densenet_bc_k12_depth100", 10): 769_162, ("efficientnet_lite0", 1000): 4_652_008,
    ("MobileNetV1", 1000): 4_231_976,
}


@pytest.mark.parametrize("name,classes", list(COUNTS))
def test_parameter_counts_are_those_of_the_home_definitions(name, classes):
    with torch.device("meta"):
        model = registered_architectures()[name].build(classes)
    assert sum(p.numel() for p in model.parameters()) == COUNTS[(name, classes)]


@pytest.mark.parametrize("name", ["resnet32_option_a", "resnet44_option_a", "resnet110_option_a",
                                  "resnet1202_option_a", "preresnet110", "wide_resnet40_4", "wide_resnet28_10",
                                  "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite3",
                                  "efficientnet_lite4"])
def test_larger_variants_are_recognised_from_their_shapes_alone(name):
    """Built on the meta device (no memory): the fingerprint needs the names and shapes only."""
    with torch.device("meta"):
        state = registered_architectures()[name].build(100).state_dict()
    matches = [arch.name for arch, classes in fingerprint(state) if classes == 100]
    assert matches[:1] == [name]


def test_lite_stem_head_and_outer_stages_are_not_scaled():
    with torch.device("meta"):
        lite4 = registered_architectures()["efficientnet_lite4"].build(1000)
    assert tuple(lite4._conv_stem.weight.shape) == (32, 3, 3, 3) and tuple(lite4._conv_head.weight.shape)[0] == 1280
    assert not hasattr(lite4._blocks[0], "_expand_conv")  # the first stage keeps its one block
    assert tuple(lite4._blocks[1]._expand_conv.weight.shape) == (144, 24, 1, 1)  # 16 × 1.4 → 24 (rounded to 8)
    assert len(lite4._blocks) == 1 + 4 + 4 + 6 + 6 + 8 + 1  # ceil(1.8 × repeats), first and last kept


def _akamaster_state(depth: int = 56):
    torch.manual_seed(0)
    return {f"module.{k}": v for k, v in _without_batch_counters(OptionAResNet(depth, 10).state_dict()).items()}


def test_unrecognised_state_dict_counts_tensors_and_parameters_and_names_the_closest_family(tmp_path):
    state = {k.replace("linear", "classifier"): v for k, v in _akamaster_state().items()}
    torch.save({"state_dict": state}, tmp_path / "renamed.th")
    with pytest.raises(ArchitectureError) as caught:
        load_model(tmp_path / "renamed.th")
    message = str(caught.value)
    assert "renamed.th: architecture not recognised from its 277 tensors, 853,018 parameters" in message
    assert "Closest registered: resnet56_option_a: the file lacks 2 names (linear.weight, linear.bias); has 2 names " \
           "(classifier.weight, classifier.bias) that resnet56_option_a lacks" in message
    assert "--" not in message and "kdx " not in message  # the window shows it: no command-line advice


def test_named_architecture_that_does_not_fit_says_what_differs_and_what_fits(tmp_path):
    torch.save({"state_dict": _akamaster_state()}, tmp_path / "resnet56.th")
    with pytest.raises(ArchitectureError) as caught:
        load_model(tmp_path / "resnet56.th", arch="resnet56")
    message = str(caught.value)
    assert "do not match architecture resnet56 (resnet56: the file lacks 12 names (layer2.0.downsample.0.weight, " \
           "layer2.0.downsample.1.weight, layer2.0.downsample.1.bias, …); has 2 names (linear.weight, linear.bias) " \
           "that resnet56 lacks); the weights fit resnet56_option_a" in message
    assert "--" not in message


def test_first_shape_mismatch_is_named(tmp_path):
    state = _akamaster_state(20)
    state["module.layer2.1.conv1.weight"] = torch.zeros(32, 32, 5, 5)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ModelLoadError, match=r"resnet20_option_a: first shape mismatch layer2\.1\.conv1\.weight: "
                                             r"32×32×5×5 in the file, 32×32×3×3 in resnet20_option_a"):
        load_model(tmp_path / "odd.pth", arch="resnet20_option_a")


def test_the_command_line_adds_its_own_advice(tmp_path, capsys):
    from kdx_engine.cli import main

    state = {k.replace("linear", "classifier"): v for k, v in _akamaster_state(20).items()}
    torch.save(state, tmp_path / "renamed.pth")
    assert main(["info", str(tmp_path / "renamed.pth")]) == 2
    err = capsys.readouterr().err
    assert "architecture not recognised from its 97 tensors" in err
    assert "--arch" in err and "kdx info --list-archs" in err
