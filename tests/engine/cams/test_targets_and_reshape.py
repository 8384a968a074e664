"""What to explain (target objects that seed the backward pass) and how to see a layer as an image
(reshape transforms): Grad-CAM of a token layer equals pytorch-grad-cam's with its reshape_transform."""
import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM as RefGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
from pytorch_grad_cam import LayerCAM as RefLayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from conftest import backend_for
from float32_tolerances import normalised_map_atol
from kdx_engine.cams import (CamTarget, ClassTarget, ClassTargets, GradientSeed, SpatialLayer, TargetRule,
                             TokensAsImage, cam_method)
from kdx_engine.models.backend import LOGITS


class TinyTokens(nn.Module):
    """Patch-embedding conv → tokens with class (and distillation) tokens → a Linear block → GELU →
    mean-pool over tokens → head: the shape of a small ViT/DeiT, built here."""

    def __init__(self, classes=4, dim=8, patch=4, extra_tokens=1):
        super().__init__()
        torch.manual_seed(11)
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.extra = nn.Parameter(torch.randn(1, extra_tokens, dim))
        self.block = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.head = nn.Linear(dim, classes)
        with torch.no_grad():  # a trained head's scale: raw maps span > 0.05, so grad-cam's ε = 1e-7, which it
            self.head.weight.mul_(30)  # adds on the raw scale (test_cam_methods), stays ≤ 2e-6 here

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.extra.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.head(self.act(self.block(tokens)).mean(dim=1))


def _grad_cam_reshape(drop, height, width):
    """pytorch-grad-cam's ViT recipe (its tutorial's ``reshape_transform``)."""
    def reshape(tensor):
        result = tensor[:, drop:, :].reshape(tensor.size(0), height, width, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)
    return reshape


CASES = [  # drop, grid given to TokensAsImage, input H×W (patches of 4)
    (1, None, (16, 16)),  # a class token, a square grid inferred from √(T − 1)
    (2, (4, 8), (16, 32)),  # class and distillation tokens, a grid given (not square)
]


@pytest.mark.parametrize("name,reference", [("gradcam", RefGradCAM), ("gradcam++", RefGradCAMPlusPlus),
                                            ("layercam", RefLayerCAM)])
@pytest.mark.numerics
@pytest.mark.parametrize("drop,grid,size", CASES)
def test_token_layer_as_image_matches_pytorch_grad_cam(name, reference, drop, grid, size):
    model = TinyTokens(extra_tokens=drop).eval()
    images = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(2))
    classes = [0, 3, 1]
    ref_model = copy.deepcopy(model)
    with reference(model=ref_model, target_layers=[ref_model.block],
                   reshape_transform=_grad_cam_reshape(drop, size[0] // 4, size[1] // 4)) as cam:
        expected = cam(input_tensor=images, targets=[ClassifierOutputTarget(k) for k in classes])

    ours = cam_method(name)(backend_for(copy.deepcopy(model), 4, input_size=size[0]), layer="block",
                            reshape_transform=TokensAsImage(drop=drop, grid=grid))
    result = ours(images, [ClassTarget(k) for k in classes])
    assert result.low_res.shape == (3, size[0] // 4, size[1] // 4)
    assert (result.maps.amax(dim=(1, 2)) - result.maps.amin(dim=(1, 2))).min() > 0.05
    got = result.normalised().numpy()  # the map the user gets, not re-normalised here
    assert got.shape == expected.shape
    # another float32 implementation: the raw maps' rounding over their span, and grad-cam's ε convention
    np.testing.assert_allclose(got, expected, rtol=0, atol=normalised_map_atol(result.maps))
    assert all(note is None for note in result.notes)


def test_tokens_as_image_lays_tokens_out_row_by_row():
    tokens = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)  # 1 class token + 2×3 patches
    image = TokensAsImage(drop=1, grid=(2, 3))(tokens, "blocks.0")
    assert image.shape == (2, 3, 2, 3)
    torch.testing.assert_close(image[1, :, 1, 2], tokens[1, 6])
    torch.testing.assert_close(image[0, :, 0, 0], tokens[0, 1])
    assert TokensAsImage()(torch.zeros(1, 17, 5), "x").shape == (1, 5, 4, 4)  # √16


def test_shapes_that_are_not_images_are_refused_with_the_layer_named():
    with pytest.raises(ValueError, match=r"'fc' has output shape \(5,\); a CAM needs C×H×W"):
        SpatialLayer()(torch.zeros(2, 5), "fc")
    with pytest.raises(ValueError, match="18 tokens less 1 leave 17"):
        TokensAsImage()(torch.zeros(1, 18, 4), "blocks.3")
    with pytest.raises(ValueError, match="needs T×C tokens"):
        TokensAsImage()(torch.zeros(1, 4, 2, 2), "stage")
    # a token layer forced through the C×H×W transform: the CAM says so instead of mis-reading the axes
    model = TinyTokens().eval()
    with pytest.raises(ValueError, match="a CAM needs C×H×W"):
        cam_method("gradcam")(backend_for(model, 4, input_size=16), layer="block", reshape_transform=SpatialLayer())(
            torch.zeros(1, 3, 16, 16), [ClassTarget(0)])


def test_a_token_layer_is_laid_out_on_its_patch_grid_without_being_told():
    backend = backend_for(TinyTokens(extra_tokens=2).eval(), 4, input_size=16)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    automatic = cam_method("gradcam")(backend, layer="block")(images, [ClassTarget(0), ClassTarget(2)])
    given = cam_method("gradcam")(backend, layer="block", reshape_transform=TokensAsImage(drop=2, grid=4))(
        images, [ClassTarget(0), ClassTarget(2)])
    assert automatic.low_res.shape == (2, 4, 4)
    torch.testing.assert_close(automatic.maps, given.maps)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_class_targets_a_rule_and_a_list_give_the_same_maps():
    backend = backend_for(_Net().eval(), 3, input_size=12)
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    cam = cam_method("gradcam")(backend, layer="features")
    predicted = backend.logits(x).argmax(dim=1).tolist()
    by_list = cam(x, [ClassTarget(k) for k in predicted])
    by_rule = cam(x, TargetRule("predicted"))
    by_object = cam(x, ClassTargets(tuple(ClassTarget(k) for k in predicted), rule="mine"))
    for result in (by_rule, by_object):
        torch.testing.assert_close(result.maps, by_list.maps, atol=0, rtol=0)
    assert by_list.target_rule == "given" and by_rule.target_rule == "predicted" and by_object.target_rule == "mine"
    assert by_list.targets == by_rule.targets == tuple(predicted)
    assert cam(x, TargetRule("predicted"), target_rule="renamed").target_rule == "renamed"


class _FeatureTarget(CamTarget):
    """A target seeded at a layer downstream of the gradient layer (as UniCAM's is): here the pooled
    feature k, whose cotangent is a one-hot at the penultimate layer."""

    reads_logits = False

    def __init__(self, channel):
        self.channel = channel

    def seed(self, forward):
        features = forward.activations["@penultimate"]
        cotangent = torch.zeros_like(features)
        cotangent[:, self.channel] = 1.0
        return GradientSeed({"@penultimate": cotangent}, (self.channel,) * len(features), "feature",
                            blank_note=lambda raw, grads: "blank by my reading" if not (raw > 0).any() else None,
                            details={"seeded_at": "@penultimate"})


def test_a_target_seeded_downstream_of_the_layer_runs_the_same_pipeline():
    """Seeding the pooled feature k is Grad-CAM of a head whose only logit is that feature."""
    model = _Net().eval()
    backend = backend_for(copy.deepcopy(model), 3, input_size=12)
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    cam = cam_method("gradcam")(backend, layer="features")
    result = cam.from_forward(x, cam.run_forward(x, ["@penultimate"]), _FeatureTarget(4))

    picked = copy.deepcopy(model)
    with torch.no_grad():
        picked.fc.weight.zero_()
        picked.fc.weight[0, 4] = 1.0
        picked.fc.bias.zero_()
    expected = cam_method("gradcam")(backend_for(picked, 3, input_size=12), layer="features")(
        x, [ClassTarget(0)] * 2)
    torch.testing.assert_close(result.maps, expected.maps)
    assert result.targets == (4, 4) and result.target_rule == "feature"
    assert result.details == {"seeded_at": "@penultimate"}
    assert all(note in (None, "blank by my reading") for note in result.notes)


def test_gradient_free_methods_need_class_targets():
    backend = backend_for(_Net().eval(), 3, input_size=12)
    x = torch.zeros(1, 3, 12, 12)
    cam = cam_method("scorecam")(backend, layer="features")
    forward = backend.forward(x, ["features", "@penultimate"])
    with pytest.raises(ValueError, match="scores class targets"):
        cam.from_forward(x, forward, _FeatureTarget(0))


def test_a_class_seed_is_the_one_hot_of_the_logits():
    logits = torch.randn(2, 5)

    class _Forward:
        pass

    forward = _Forward()
    forward.logits = logits
    seed = TargetRule("class", class_index=3).seed(forward)
    expected = torch.zeros(2, 5)
    expected[:, 3] = 1
    torch.testing.assert_close(seed.cotangents[LOGITS], expected)
    assert seed.indices == (3, 3) and seed.rule == "class" and [t.index for t in seed.class_targets] == [3, 3]
