"""CAMs on vision transformers (randomly initialised timm models, seeded): Grad-CAM on a DeiT-tiny and a
Swin-T equals pytorch-grad-cam with its documented reshape transforms; every CAM method works on token
layers; a distilled DeiT's class and distillation heads are separate targets; attention rollout equals a
rollout computed here from the attention weights; UniCAM's feature layer is the pre-logits token."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM as RefGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
from pytorch_grad_cam import LayerCAM as RefLayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from conftest import backend_for
from float32_tolerances import normalised_map_atol
from kdx_engine.cams import CAM_METHODS, ClassTarget, HeadTarget, cam_method

SIZE = 64  # 4×4 patches of 16


def _deit(name="deit_tiny_patch16_224", classes=5, seed=0, head_scale=30.0, **options):
    """A seeded DeiT; the head is scaled as a trained one is, so raw maps span well above grad-cam's ε
    (which it adds on the raw scale) and the comparison at 1e-5 measures the maps, not ε."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=classes, img_size=SIZE, **options).eval()
    with torch.no_grad():
        for head in ("head", "head_dist"):
            if hasattr(model, head):
                getattr(model, head).weight.mul_(head_scale)
    return model


def _images(n=3, size=SIZE, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def vit_reshape_transform(tensor, height=4, width=4, drop=1):
    """pytorch-grad-cam's documented ViT/DeiT reshape transform (its vit_example.py), for ``drop``
    leading tokens."""
    result = tensor[:, drop:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape_transform(tensor, height=2, width=2):
    """pytorch-grad-cam's documented Swin reshape transform (its swinT_example.py)."""
    result = tensor.reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def _reference(method, model, layer, images, classes, reshape):
    model = copy.deepcopy(model)
    for param in model.parameters():
        param.requires_grad_(True)
    with method(model=model, target_layers=[layer(model)], reshape_transform=reshape) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(k) for k in classes])


@pytest.fixture(scope="module", params=[("deit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)],
                ids=["deit_tiny", "deit_tiny_distilled"])
def deit_tiny(request):
    name, drop = request.param
    return _deit(name), drop


def test_grad_cam_on_deit_tiny_matches_pytorch_grad_cam_at_the_automatic_layer(deit_tiny):
    model, drop = deit_tiny
    images, classes = _images(), [0, 3, 1]
    expected = _reference(RefGradCAM, model, lambda m: m.blocks[-1].norm1, images, classes,
                          lambda t: vit_reshape_transform(t, drop=drop))
    result = cam_method("gradcam")(backend_for(model, 5, SIZE))(images, [ClassTarget(k) for k in classes])
    assert result.layer == "blocks.11.norm1"  # the automatic layer of a ViT
    assert result.low_res.shape == (3, 4, 4) and all(note is None for note in result.notes)
    np.testing.assert_allclose(result.normalised().numpy(), expected, rtol=0, atol=normalised_map_atol(result.maps))


@pytest.mark.numerics
@pytest.mark.parametrize("method,reference", [("gradcam++", RefGradCAMPlusPlus), ("layercam", RefLayerCAM)])
def test_grad_cam_pp_and_layer_cam_on_a_small_deit_match_pytorch_grad_cam(method, reference):
    model, images, classes = _small_deit(), _images(), [0, 3, 1]
    expected = _reference(reference, model, lambda m: m.blocks[-1].norm1, images, classes,
                          lambda t: vit_reshape_transform(t, drop=2))
    result = cam_method(method)(backend_for(model, 5, SIZE))(images, [ClassTarget(k) for k in classes])
    np.testing.assert_allclose(result.normalised().numpy(), expected, rtol=0, atol=normalised_map_atol(result.maps))


def _swin(seed=0, **options):
    torch.manual_seed(seed)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, img_size=SIZE,
                              **options).eval()
    with torch.no_grad():
        model.head.fc.weight.mul_(30)
    return model


def _check_swin(model):
    images, classes = _images(2), [2, 4]
    backend = backend_for(model, 5, SIZE)
    # the documented recipe: the last block's norm2 (B × L × C tokens in timm 1.0) with its reshape transform
    expected = _reference(RefGradCAM, model, lambda m: m.layers[-1].blocks[-1].norm2, images, classes,
                          swin_reshape_transform)
    last_block = f"layers.3.blocks.{len(model.layers[-1].blocks) - 1}.norm2"
    result = cam_method("gradcam")(backend, layer=last_block)(images, [ClassTarget(k) for k in classes])
    np.testing.assert_allclose(result.normalised().numpy(), expected, rtol=0, atol=normalised_map_atol(result.maps))
    # the automatic layer: the final norm, a B × H × W × C stage, seen channels-first
    expected = _reference(RefGradCAM, model, lambda m: m.norm, images, classes, lambda t: t.permute(0, 3, 1, 2))
    result = cam_method("gradcam")(backend)(images, [ClassTarget(k) for k in classes])
    assert result.layer == "norm"
    np.testing.assert_allclose(result.normalised().numpy(), expected, rtol=0, atol=normalised_map_atol(result.maps))


def test_grad_cam_on_a_narrow_swin_matches_pytorch_grad_cam_on_tokens_and_on_channels_last_stages():
    _check_swin(_swin(embed_dim=24, depths=(1, 1, 2, 2), num_heads=(1, 1, 2, 2)))


@pytest.mark.slow
def test_grad_cam_on_swin_t_matches_pytorch_grad_cam_on_tokens_and_on_channels_last_stages():
    _check_swin(_swin())


def _small_deit(seed=0, distilled=True):
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return _deit(name, seed=seed, embed_dim=24, depth=2, num_heads=2)


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_cam_method_gives_a_map_on_a_token_layer(method):
    backend = backend_for(_small_deit(), 5, SIZE)
    result = cam_method(method)(backend, batch_size=64)(_images(2), [ClassTarget(1), ClassTarget(4)])
    assert result.layer == "blocks.1.norm1"
    assert result.maps.shape == (2, SIZE, SIZE) and result.low_res.shape == (2, 4, 4)
    assert torch.isfinite(result.maps).all() and (result.maps >= 0).all()
    assert (result.maps.flatten(1).amax(dim=1) > 0).all(), result.notes


def test_ablation_cam_on_tokens_ablates_patch_channels_and_keeps_the_class_tokens():
    """Oracle: each channel set to zero at the patch tokens of the layer's output by a hook, one by one."""
    model = _small_deit()
    image, target = _images(1), 3
    result = cam_method("ablationcam")(backend_for(model, 5, SIZE), batch_size=7)(image, [ClassTarget(target)])
    layer = model.blocks[1].norm1
    with torch.no_grad():
        base = model(image)[0, target]
        drops = []
        for channel in range(24):
            def ablate(_module, _inputs, output, channel=channel):
                output = output.clone()
                output[:, 2:, channel] = 0  # patch tokens only: the class and distillation tokens stay
                return output
            handle = layer.register_forward_hook(ablate)
            drops.append((base - model(image)[0, target]) / base)
            handle.remove()
        weights = torch.stack(drops)
        tokens = {}
        handle = layer.register_forward_hook(lambda _m, _i, out: tokens.setdefault("out", out))
        model(image)
        handle.remove()
    activation = tokens["out"][0, 2:].T.reshape(24, 4, 4)
    expected = torch.relu((weights[:, None, None] * activation).sum(dim=0))
    torch.testing.assert_close(result.low_res[0], expected, atol=1e-5, rtol=1e-4)


def test_the_class_and_distillation_heads_are_separate_targets():
    model, images = _small_deit(), _images(2)
    backend = backend_for(model, 5, SIZE)

    class OneHead(nn.Module):
        """The distilled DeiT with one head's scores as its output (for pytorch-grad-cam)."""

        def __init__(self, head, token):
            super().__init__()
            self.model, self.head, self.token = model, head, token

        def forward(self, x):
            return getattr(self.model, self.head)(self.model.forward_features(x)[:, self.token])

    maps = {}
    for head, token in (("head", 0), ("head_dist", 1)):
        result = cam_method("gradcam")(backend)(images, HeadTarget(head, rule="class", class_index=2))
        expected = _reference(RefGradCAM, OneHead(head, token), lambda m: m.model.blocks[-1].norm1, images, [2, 2],
                              lambda t: vit_reshape_transform(t, drop=2))
        np.testing.assert_allclose(result.normalised().numpy(), expected, rtol=0, atol=normalised_map_atol(result.maps))
        assert result.target_rule == f"class ({head})" and result.targets == (2, 2)
        maps[head] = result.normalised()
    assert (maps["head"] - maps["head_dist"]).abs().max() > 0.05  # two heads, two different explanations


def test_attention_rollout_equals_a_rollout_of_the_attention_weights_computed_here():
    model = _deit("deit_tiny_patch16_224", embed_dim=24, depth=3, num_heads=2)
    images = _images(2)
    result = cam_method("rollout")(backend_for(model, 5, SIZE))(images, [ClassTarget(0), ClassTarget(1)])
    with torch.no_grad():  # Abnar & Zuidema: mean over heads, (A + I) / 2 renormalised, chained first to last
        x = model.patch_embed(images)
        x = model._pos_embed(x)
        rollout = torch.eye(x.shape[1]).expand(2, -1, -1)
        for block in model.blocks:
            h = block.norm1(x)
            qkv = block.attn.qkv(h).reshape(2, x.shape[1], 3, 2, 12).permute(2, 0, 3, 1, 4)
            attention = ((qkv[0] @ qkv[1].transpose(-2, -1)) * 12 ** -0.5).softmax(dim=-1)
            step = (attention.mean(dim=1) + torch.eye(x.shape[1])) / 2
            rollout = (step / step.sum(dim=-1, keepdim=True)) @ rollout
            x = block(x)
    torch.testing.assert_close(result.low_res, rollout[:, 0, 1:].reshape(2, 4, 4), atol=1e-6, rtol=1e-5)
    assert result.method == "rollout" and result.details["rollout"]["blocks"] == 3
    assert all(block.attn.fused_attn for block in model.blocks)  # the fused kernel is back after the pass


def test_attention_rollout_refuses_a_model_without_attention():
    convnet = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    with pytest.raises(ValueError, match="attention rollout needs a ViT/DeiT"):
        cam_method("rollout")(backend_for(convnet, 3, 32))


def test_kdx_explain_offers_rollout_for_a_deit_and_refuses_it_for_a_cnn(tmp_path, capsys):
    import json

    from kdx_engine.bundled import DEMO_MODELS, DEMO_SAMPLES
    from kdx_engine.cli import main

    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=48)
    torch.save(deit.state_dict(), tmp_path / "deit.pth")
    image = f"{DEMO_SAMPLES}/circle/00000.png"
    assert main(["explain", "--method", "rollout", "--model", str(tmp_path / "deit.pth"), image,
                 "--out", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["method"] == "rollout" and manifest["model"]["architecture"] == "timm:deit_tiny_patch16_224"
    assert np.load(tmp_path / "out" / "00000.npy").shape == (48, 48)
    assert main(["explain", "--method", "rollout", "--model", str(DEMO_MODELS / "teacher.pth"), image,
                 "--out", str(tmp_path / "out2")]) == 2  # the demo Teacher, a CNN
    assert "attention rollout needs a ViT/DeiT" in capsys.readouterr().err


def test_a_torch_export_program_of_a_deit_gives_the_modules_maps(tmp_path):
    from kdx_engine.models import load_model
    from kdx_engine.models.preprocessing import Preprocessing, write_sidecar

    model = _deit("deit_tiny_patch16_224", embed_dim=24, depth=2, num_heads=2)
    program = torch.export.export(model, (_images(2),), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(tmp_path / "deit.pt2"))
    write_sidecar(tmp_path / "deit.pt2", Preprocessing(input_size=SIZE, resize=None, source="sidecar"))
    images, targets = _images(2), [ClassTarget(1), ClassTarget(3)]
    got = cam_method("gradcam")(load_model(tmp_path / "deit.pt2"))(images, targets)
    expected = cam_method("gradcam")(backend_for(model, 5, SIZE))(images, targets)
    assert got.layer == expected.layer == "blocks.1.norm1"
    torch.testing.assert_close(got.normalised(), expected.normalised(), atol=1e-5, rtol=0)
