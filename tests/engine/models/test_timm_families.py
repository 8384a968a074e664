"""timm architectures: ``timm:NAME`` builds any timm model without weights, the KD families are recognised
from parameter names and shapes, preprocessing comes from timm's ``pretrained_cfg``, and token/channels-
last layers are probed with their layout (the ViT's automatic layer is ``blocks[-1].norm1``)."""
from __future__ import annotations

import math
import socket

import pytest
import timm
import torch

from conftest import backend_for
from kdx_engine.data.images import to_tensor
from kdx_engine.models import ModelLoadError, Preprocessing, load_model, read_sidecar, registry, write_sidecar
from kdx_engine.models.architectures import timm_family
from kdx_engine.models.backend import HWC, TOKENS, head_input
from kdx_engine.models.layers import default_target_layer, probe_layers, stage_layers


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing may be fetched: hub access is off and any socket connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*_args, **_kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _meta_state_dict(name: str, num_classes: int, **options) -> dict:
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **options).state_dict()


@pytest.mark.parametrize("name", [name for name, _ in timm_family.RECOGNISED])
def test_each_kd_family_is_recognised_from_its_parameter_names_and_shapes(name):
    matches = [(arch.name, count) for arch, count in registry.fingerprint(_meta_state_dict(name, 10))]
    expected = {f"timm:{name}", *timm_family.same_layout_as(f"timm:{name}")}
    assert {arch for arch, _ in matches} == expected
    assert {count for _, count in matches} == {10}


def test_distilled_and_plain_deit_are_told_apart():
    plain = registry.fingerprint(_meta_state_dict("deit_small_patch16_224", 100))
    distilled = registry.fingerprint(_meta_state_dict("deit_small_distilled_patch16_224", 100))
    assert [a.name for a, _ in plain] == ["timm:deit_small_patch16_224", "timm:vit_small_patch16_224"]
    assert [a.name for a, _ in distilled] == ["timm:deit_small_distilled_patch16_224"]


def test_a_vit_is_fitted_to_the_input_size_of_its_position_embedding():
    (arch, count), = registry.fingerprint(_meta_state_dict("deit_tiny_distilled_patch16_224", 4, img_size=64))
    assert (arch.name, count) == ("timm:deit_tiny_distilled_patch16_224", 4)
    assert arch.preset.input_size == 64 and arch.preset.resize is None  # small inputs: resized straight
    assert dict(arch.options) == {"img_size": 64}


@pytest.mark.parametrize("name,input_size,crop_pct,mean", [
    ("deit_small_patch16_224", 224, 0.9, (0.485, 0.456, 0.406)),
    ("vit_small_patch16_224", 224, 0.9, (0.5, 0.5, 0.5)),
    ("convnext_tiny", 224, 0.95, (0.485, 0.456, 0.406)),
    ("efficientnet_b0", 224, 0.875, (0.485, 0.456, 0.406)),
])
def test_preprocessing_comes_from_timms_pretrained_cfg(name, input_size, crop_pct, mean):
    preset = registry.get_architecture(f"timm:{name}").preset
    cfg = timm.get_pretrained_cfg(name)
    assert (cfg.crop_pct, tuple(cfg.mean)) == (crop_pct, mean)  # the values this test expects are timm's own
    assert preset.input_size == input_size
    assert preset.resize == math.floor(input_size / crop_pct)  # timm's eval transform: floor(size / crop_pct)
    assert preset.mean == mean and preset.std == tuple(cfg.std)
    assert preset.interpolation == cfg.interpolation == "bicubic"
    assert preset.source == "family-preset" and preset.architecture == f"timm:{name}"


def _save_deit(tmp_path, name="deit_tiny_patch16_224", classes=4, size=64, seed=0):
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=classes, img_size=size).eval()
    path = tmp_path / "student.pth"
    torch.save({"model": model.state_dict()}, path)
    return model, path


def test_a_deit_state_dict_loads_recognised_with_its_preset_and_the_same_logits(tmp_path):
    model, path = _save_deit(tmp_path)
    backend = load_model(path)
    assert backend.info.architecture == "timm:deit_tiny_patch16_224"
    assert backend.info.num_classes == 4
    prep = backend.info.preprocessing
    assert (prep.input_size, prep.interpolation, prep.source) == (64, "bicubic", "family-preset")
    assert any("recognised from parameter names and shapes: timm:deit_tiny_patch16_224" in n for n in backend.info.notes)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(backend.logits(x), model(x))
    # the sidecar keeps the timm architecture and its interpolation
    write_sidecar(path, backend.info.preprocessing)
    assert read_sidecar(path).interpolation == "bicubic"
    assert read_sidecar(path).architecture == "timm:deit_tiny_patch16_224"


def test_arch_timm_name_builds_any_timm_model_named(tmp_path):
    model, path = _save_deit(tmp_path)  # ViT-Ti has DeiT-Ti's parameters; it is not among the registered families
    assert "timm:vit_tiny_patch16_224" not in registry.registered_architectures()
    backend = load_model(path, arch="timm:vit_tiny_patch16_224")
    assert backend.info.architecture == "timm:vit_tiny_patch16_224"
    assert backend.info.preprocessing.mean == (0.5, 0.5, 0.5)  # ViT's augreg preprocessing, from its pretrained_cfg
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backend.logits(x), model(x))


def test_a_wrong_or_unknown_timm_name_is_a_clear_error(tmp_path):
    _, path = _save_deit(tmp_path)
    with pytest.raises(ModelLoadError, match="'nonsense_net' is not a model timm knows"):
        load_model(path, arch="timm:nonsense_net")
    with pytest.raises(ModelLoadError, match="do not match architecture timm:convnext_tiny"):
        load_model(path, arch="timm:convnext_tiny")


def test_an_unknown_interpolation_is_refused():
    with pytest.raises(ValueError, match="'interpolation' must be one of"):
        Preprocessing(interpolation="lanczos")


def test_bicubic_interpolation_is_used_for_the_model_input():
    image = (torch.rand(40, 50, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    bilinear = Preprocessing(input_size=32, resize=None)
    bicubic = Preprocessing(input_size=32, resize=None, interpolation="bicubic")
    chw = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    expected = torch.nn.functional.interpolate(chw, size=(32, 32), mode="bicubic", antialias=True,
                                               align_corners=False)[0].clamp(0, 255)
    mean, std = torch.tensor(bicubic.mean).view(3, 1, 1), torch.tensor(bicubic.std).view(3, 1, 1)
    torch.testing.assert_close(to_tensor(image, bicubic), (expected / 255 - mean) / std)
    assert not torch.allclose(to_tensor(image, bilinear), to_tensor(image, bicubic))


def test_a_distilled_deit_has_both_heads_and_their_inputs_as_layers():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=5, img_size=32).eval()
    backend = backend_for(model, 5, 32)
    assert backend.classifier == "head" and backend.other_heads == ("head_dist",)
    x = torch.randn(2, 3, 32, 32)
    result = backend.forward(x, ["@penultimate", head_input("head_dist"), "norm"])
    tokens = result.activations["norm"]
    torch.testing.assert_close(result.activations["@penultimate"], tokens[:, 0])  # the class token
    torch.testing.assert_close(result.activations[head_input("head_dist")], tokens[:, 1])  # the distillation token


def test_vit_layers_are_tokens_on_the_patch_grid_and_the_automatic_layer_is_the_last_norm1():
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=5, img_size=64).eval()
    layers = {layer.name: layer for layer in probe_layers(backend_for(model, 5, 64))}
    block = layers["blocks.3.norm1"]
    assert (block.layout, block.grid, block.prefix_tokens, block.stride) == (TOKENS, (4, 4), 2, 16)
    assert layers["patch_embed"].prefix_tokens == 0  # before the class and distillation tokens join
    assert not layers["blocks.3.attn.q_norm"].is_spatial  # heads × tokens × head_dim is no image
    assert default_target_layer(list(layers.values())) == "blocks.11.norm1"
    assert stage_layers(list(layers.values())) == [f"blocks.{i}" for i in range(11)] + ["blocks"]  # blocks = blocks.11


def test_swin_stages_are_channels_last_and_convnext_stages_are_channels_first():
    # Swin-T's and ConvNeXt-T's layouts at a reduced width and depth (their layouts do not depend on it)
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=3, img_size=64,
                             embed_dim=24, depths=(1, 1, 2, 1), num_heads=(1, 1, 1, 1)).eval()
    layers = probe_layers(backend_for(swin, 3, 64))
    by_name = {layer.name: layer for layer in layers}
    assert (by_name["layers.1"].layout, by_name["layers.1"].grid, by_name["layers.1"].stride) == (HWC, (8, 8), 8)
    assert (by_name["layers.2.blocks.1.norm2"].layout, by_name["layers.2.blocks.1.norm2"].grid) == (TOKENS, (4, 4))
    assert default_target_layer(layers) == "norm"
    assert stage_layers(layers) == ["layers.0", "layers.1", "layers.2", "layers"]
    convnext = timm.create_model("convnext_tiny", pretrained=False, num_classes=3, dims=(8, 16, 24, 32),
                                 depths=(1, 1, 1, 1)).eval()
    layers = probe_layers(backend_for(convnext, 3, 64))
    assert stage_layers(layers) == ["stages.0", "stages.1", "stages.2", "stages"]
    assert default_target_layer(layers) == "norm_pre"  # timm's identity after the last stage (2×2 here)
