"""The built-in architecture families: they build, run, carry the toolkits' parameter names and shapes,
and are recognised from a state_dict."""
from __future__ import annotations

import pytest
import torch
import torchvision

from kdx_engine.models import registry
from kdx_engine.models.architectures import timm_family, torchvision_models

CIFAR_ZOO = {
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
    "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "cifar_vgg11", "cifar_vgg13",
    "cifar_vgg16", "cifar_vgg19", "MobileNetV2", "ShuffleV1", "ShuffleV2",
}
BUILTIN = set(torchvision_models.TORCHVISION_NAMES) | CIFAR_ZOO
# Only the built-in families: other tests may register architectures of their own in the same registry.
ARCHITECTURES = {name: arch for name, arch in registry.registered_architectures().items() if name in BUILTIN}
CIFAR_NAMES = sorted(CIFAR_ZOO)

# Names and shapes read from RepDistiller models/{resnet,wrn,vgg,mobilenetv2}.py (the same in mdistiller
# mdistiller/models/cifar/), at 100 classes; totals are the parameter counts of those definitions.
TOOLKIT_PARAMETERS = {
    "resnet8x4": (1_233_540, [
        ("conv1.weight", (32, 3, 3, 3)),
        ("bn1.running_mean", (32,)),
        ("layer1.0.conv1.weight", (64, 32, 3, 3)),
        ("layer1.0.downsample.0.weight", (64, 32, 1, 1)),
        ("layer1.0.downsample.1.weight", (64,)),
        ("layer2.0.conv2.weight", (128, 128, 3, 3)),
        ("layer3.0.conv1.weight", (256, 128, 3, 3)),
        ("layer3.0.bn2.bias", (256,)),
        ("fc.weight", (100, 256)),
        ("fc.bias", (100,)),
    ]),
    "resnet32x4": (7_433_860, [
        ("conv1.weight", (32, 3, 3, 3)),
        ("layer1.0.downsample.0.weight", (64, 32, 1, 1)),
        ("layer1.4.conv2.weight", (64, 64, 3, 3)),
        ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
        ("layer3.4.conv2.weight", (256, 256, 3, 3)),
        ("fc.weight", (100, 256)),
    ]),
    "resnet20": (278_324, [
        ("conv1.weight", (16, 3, 3, 3)),
        ("layer1.0.conv1.weight", (16, 16, 3, 3)),
        ("layer1.2.bn2.running_var", (16,)),
        ("layer2.0.downsample.0.weight", (32, 16, 1, 1)),
        ("layer3.2.conv2.weight", (64, 64, 3, 3)),
        ("fc.weight", (100, 64)),
    ]),
    "wrn_40_2": (2_255_156, [
        ("conv1.weight", (16, 3, 3, 3)),
        ("block1.layer.0.bn1.weight", (16,)),
        ("block1.layer.0.conv1.weight", (32, 16, 3, 3)),
        ("block1.layer.0.convShortcut.weight", (32, 16, 1, 1)),
        ("block1.layer.5.conv2.weight", (32, 32, 3, 3)),
        ("block2.layer.0.convShortcut.weight", (64, 32, 1, 1)),
        ("block3.layer.5.bn2.running_mean", (128,)),
        ("bn1.weight", (128,)),
        ("fc.weight", (100, 128)),
    ]),
    "vgg8": (3_965_028, [
        ("block0.0.weight", (64, 3, 3, 3)),
        ("block0.0.bias", (64,)),
        ("block0.1.running_var", (64,)),
        ("block1.0.weight", (128, 64, 3, 3)),
        ("block2.0.weight", (256, 128, 3, 3)),
        ("block3.1.weight", (512,)),
        ("block4.0.weight", (512, 512, 3, 3)),
        ("classifier.weight", (100, 512)),
    ]),
    "MobileNetV2": (812_836, [
        ("conv1.0.weight", (16, 3, 3, 3)),
        ("conv1.1.weight", (16,)),
        ("blocks.0.0.conv.0.weight", (16, 16, 1, 1)),
        ("blocks.0.0.conv.3.weight", (16, 1, 3, 3)),
        ("blocks.0.0.conv.6.weight", (8, 16, 1, 1)),
        ("blocks.1.0.conv.0.weight", (48, 8, 1, 1)),
        ("blocks.3.3.conv.7.running_mean", (32,)),
        ("blocks.6.0.conv.6.weight", (160, 480, 1, 1)),
        ("conv2.0.weight", (1280, 160, 1, 1)),
        ("classifier.0.weight", (100, 1280)),
    ]),
}

# The modules KDX hooks as stages; each must output one tensor.
STAGES = {
    "resnet20": ["layer1", "layer2", "layer3", "layer3.2"],
    "resnet8x4": ["layer1", "layer2", "layer3"],
    "wrn_16_2": ["block1", "block2", "block3"],
    "vgg8": ["block0", "block1", "block2", "block3", "block4"],
    "MobileNetV2": [f"blocks.{k}" for k in range(7)],
    "ShuffleV1": ["layer1", "layer2", "layer3"],
    "ShuffleV2": ["layer1", "layer2", "layer3"],
}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These models are tiny; one thread avoids OpenMP threads spinning against each other on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registry_holds_the_torchvision_classifiers_and_the_cifar_kd_zoo():
    assert ARCHITECTURES.keys() == BUILTIN
    assert {name for name, arch in ARCHITECTURES.items() if arch.family.startswith("cifar_")} == CIFAR_ZOO
    assert len(BUILTIN) == 47


def test_presets_carry_the_family_preset_and_the_architecture_name():
    for name, arch in ARCHITECTURES.items():
        assert arch.preset.architecture == name
        assert arch.preset.source == "family-preset"
        expected_size = 32 if name in CIFAR_ZOO else 224
        assert (arch.preset.input_size, arch.default_classes) == (expected_size, 100 if name in CIFAR_ZOO else 1000)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_on_the_meta_device(name):
    arch = ARCHITECTURES[name]
    shapes = registry.architecture_shapes(arch, arch.default_classes)
    assert shapes, name


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_architectures_give_logits_for_a_cifar_batch(name):
    torch.manual_seed(0)
    model = ARCHITECTURES[name].build().eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, 100)
    assert torch.isfinite(logits).all()


def test_resnet18_gives_logits_for_a_small_imagenet_batch():
    model = ARCHITECTURES["resnet18"].build().eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1000)


def test_regnet_builder_matches_torchvision_regnet_y_400mf():
    ours = registry.parameter_shapes(ARCHITECTURES["regnet_y_400mf"].build(10).state_dict())
    theirs = registry.parameter_shapes(torchvision.models.regnet_y_400mf(weights=None, num_classes=10).state_dict())
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(TOOLKIT_PARAMETERS))
def test_cifar_parameter_names_and_shapes_match_the_toolkits(name):
    total, known = TOOLKIT_PARAMETERS[name]
    with torch.device("meta"):
        model = ARCHITECTURES[name].build(100)
    shapes = registry.parameter_shapes(model.state_dict())
    for key, shape in known:
        assert shapes.get(key) == shape, key
    assert sum(p.numel() for p in model.parameters()) == total


def test_resnet8x4_has_a_single_block_per_stage_and_resnet20_no_stage1_downsample():
    resnet8x4 = registry.architecture_shapes(ARCHITECTURES["resnet8x4"], 100)
    resnet20 = registry.architecture_shapes(ARCHITECTURES["resnet20"], 100)
    assert not any(key.startswith("layer1.1.") for key in resnet8x4)
    assert not any(key.startswith("layer4.") for key in resnet8x4)
    assert not any(key.startswith("layer1.0.downsample") for key in resnet20)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_modules_output_one_tensor(name):
    model = ARCHITECTURES[name].build().eval()
    modules = dict(model.named_modules())
    outputs = {}
    for stage in STAGES[name]:
        modules[stage].register_forward_hook(lambda _m, _i, out, stage=stage: outputs.__setitem__(stage, out))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert set(outputs) == set(STAGES[name])
    assert all(isinstance(out, torch.Tensor) and out.dim() == 4 for out in outputs.values())


@pytest.mark.parametrize("name", ["resnet8x4", "resnet32x4", "wrn_40_2", "vgg8", "cifar_vgg13", "MobileNetV2",
                                  "ShuffleV2", "resnet20", "resnet50", "mobilenet_v3_small"])
def test_fingerprint_recognises_the_architecture_with_a_non_default_class_count(name):
    with torch.device("meta"):
        state_dict = ARCHITECTURES[name].build(10).state_dict()
    matches = [(match.name, count) for match, count in registry.fingerprint(state_dict)]
    assert matches == [(name, 10), *[(twin, 10) for twin in timm_family.same_layout_as(name)]]


def test_every_architecture_is_recognised_as_itself_only_at_its_default_class_count():
    for name, arch in ARCHITECTURES.items():
        shapes = registry.architecture_shapes(arch, arch.default_classes)
        state_dict = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
        matches = [(match.name, count) for match, count in registry.fingerprint(state_dict)]
        assert matches == [(name, arch.default_classes),
                           *[(twin, arch.default_classes) for twin in timm_family.same_layout_as(name)]]


def test_fingerprint_of_a_real_resnet18_state_dict_is_resnet18_only():
    state_dict = torchvision.models.resnet18(weights=None).state_dict()
    assert [(match.name, count) for match, count in registry.fingerprint(state_dict)] == [("resnet18", 1000)]


def test_fingerprint_of_an_unrelated_state_dict_is_empty():
    state_dict = {"encoder.weight": torch.zeros(7, 5), "decoder.bias": torch.zeros(3)}
    assert registry.fingerprint(state_dict) == []
