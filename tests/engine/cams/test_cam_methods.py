"""The gradient-free and element-wise CAM methods, blank-map reasons and targets."""
import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import AblationCAM as RefAblationCAM
from pytorch_grad_cam import HiResCAM as RefHiResCAM
from pytorch_grad_cam import ScoreCAM as RefScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from conftest import backend_for
from float32_tolerances import NETWORK_RTOL
from kdx_engine.cams import CAM_METHODS, ClassTarget, cam_method, resolve_targets


class TinyNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture()
def tiny():
    return TinyNet().eval()


@pytest.fixture()
def tiny_images():
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def _reference(reference_cls, model, images, classes, **kwargs):
    model = copy.deepcopy(model)
    with reference_cls(model=model, target_layers=[model.features], **kwargs) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(k) for k in classes])


def _ours(name, model, images, classes):
    backend = backend_for(copy.deepcopy(model), 5, input_size=16)
    result = cam_method(name)(backend, layer="features", batch_size=5)(images, [ClassTarget(k) for k in classes])
    raw_range = (result.maps.amax(dim=(1, 2)) - result.maps.amin(dim=(1, 2))).numpy()
    raw_scale = result.maps.abs().amax(dim=(1, 2)).numpy()
    return result.normalised().numpy(), raw_range, raw_scale  # the map the user gets, not re-normalised here


@pytest.mark.numerics
@pytest.mark.parametrize("name,reference", [("scorecam", RefScoreCAM), ("ablationcam", RefAblationCAM),
                                            ("hirescam", RefHiResCAM)])
def test_method_matches_pytorch_grad_cam_on_a_small_cnn(tiny, tiny_images, name, reference):
    expected = _reference(reference, tiny, tiny_images, [1, 4])
    got, raw_range, raw_scale = _ours(name, tiny, tiny_images, [1, 4])
    # grad-cam min–max scales twice and so adds its ε = 1e-7 once on the raw scale: where a raw map spans
    # only R ≪ 1 (HiResCAM's on this net: R ≈ 2.3e-3) the two conventions part by up to about ε / R
    # (measured: 0.995 ε / R, the same in float64). The two implementations' float32 kernels differ too
    # (not compared in float64: AblationCAM here runs in float32 only): NETWORK_RTOL of the raw maps'
    # magnitude, which min–max divides by R.
    np.testing.assert_allclose(got, expected, rtol=0,
                               atol=(2 * 1e-7 + NETWORK_RTOL * raw_scale.max()) / raw_range.min())


def test_gradient_free_methods_batch_their_forwards(tiny, tiny_images):
    backend = backend_for(copy.deepcopy(tiny), 5, input_size=16)
    calls = []
    handle = backend.module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    cam_method("scorecam")(backend, layer="features", batch_size=5)(tiny_images, [ClassTarget(0)] * 2)
    handle.remove()
    # one forward for the activations, then ceil(12 channels / 5) batches per image
    assert calls == [2] + [5, 5, 2] * 2


def test_auto_layer_is_the_last_spatial_layer(tiny):
    assert cam_method("gradcam")(backend_for(tiny, 5, input_size=16)).layer == "features"


def test_a_map_that_relu_blanks_says_why(tiny, tiny_images):
    model = copy.deepcopy(tiny)
    with torch.no_grad():
        model.fc.weight.fill_(-1.0)  # every channel weight negative for class 0, activations ≥ 0
    result = cam_method("gradcam")(backend_for(model, 5, input_size=16), layer="features")(
        tiny_images, [ClassTarget(0)] * 2)
    assert (result.maps == 0).all()
    assert all("negative everywhere" in note for note in result.notes)


def test_a_layer_off_the_gradient_path_says_why(tiny_images):
    class SideBranch(TinyNet):
        def __init__(self):
            super().__init__()
            self.side = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            self.side(x)
            return super().forward(x)

    result = cam_method("gradcam")(backend_for(SideBranch().eval(), 5, input_size=16), layer="side")(
        tiny_images, [ClassTarget(0)] * 2)
    assert all("gradients at this layer are zero" in note for note in result.notes)


def test_every_method_gives_a_finite_map_of_input_size(tiny, tiny_images):
    for name in CAM_METHODS:
        result = cam_method(name)(backend_for(copy.deepcopy(tiny), 5, input_size=16), layer="features")(
            tiny_images, [ClassTarget(2)] * 2)
        assert result.maps.shape == (2, 16, 16), name
        assert torch.isfinite(result.maps).all() and (result.maps >= 0).all(), name


def test_target_rules():
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 1.0]])
    assert [t.index for t in resolve_targets("predicted", logits)] == [1, 0]
    assert [t.index for t in resolve_targets("true", logits, labels=[2, None])] == [2, 0]
    assert [t.index for t in resolve_targets("class", logits, class_index=2)] == [2, 2]
    with pytest.raises(ValueError, match="not in 0..2"):
        resolve_targets("class", logits, class_index=3)
    with pytest.raises(ValueError, match="unknown target rule"):
        resolve_targets("best", logits)
