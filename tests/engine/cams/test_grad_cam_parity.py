"""Grad-CAM, Grad-CAM++, LayerCAM and XGrad-CAM equal the grad-cam package on the same model, layer and
targets: KDX's normalised maps (min–max after resizing, METHODS §5), compared as they are."""
import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM as RefGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as RefGradCAMPlusPlus
from pytorch_grad_cam import LayerCAM as RefLayerCAM
from pytorch_grad_cam import XGradCAM as RefXGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from conftest import backend_for
from float32_tolerances import EPS32
from kdx_engine.cams import ClassTarget, Explanation, cam_method

PAIRS = [("gradcam", RefGradCAM), ("gradcam++", RefGradCAMPlusPlus), ("layercam", RefLayerCAM),
         ("xgradcam", RefXGradCAM)]


@pytest.mark.numerics
@pytest.mark.parametrize("name,reference", PAIRS)
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_cam_matches_pytorch_grad_cam_on_resnet18(resnet18, images, name, reference, layer):
    """Compared in float64 (model and images), so the two implementations' float32 kernels and summation
    orders (which differ between CPUs and thread counts) play no part. What is left: grad-cam min–max
    scales twice, adding its ε = 1e-7 once on the raw scale, so where a raw map spans R the conventions part
    by up to ε/R (measured: 8.6e-6 on layer3's Grad-CAM, in float64 as in float32), and grad-cam returns
    float32 (its rounding: EPS32 on the [0, 1] scale). A wrong layer or weighting moves the maps by 1e-2."""
    classes = [3, 7, 1]
    model, x = resnet18.double(), images.double()
    try:
        ref_model = copy.deepcopy(model)
        with reference(model=ref_model, target_layers=[dict(ref_model.named_modules())[layer]]) as cam:
            expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(k) for k in classes])
        ours = cam_method(name)(backend_for(copy.deepcopy(model), 10), layer=layer)
        result = ours(x, [ClassTarget(k) for k in classes])
    finally:
        resnet18.float()  # the session's fixture, for the tests after this one

    got = result.normalised().numpy()  # the map the user gets, not re-normalised here
    assert got.shape == expected.shape and got.dtype == np.float64
    raw_range = (result.maps.amax(dim=(1, 2)) - result.maps.amin(dim=(1, 2))).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2 * 1e-7 / raw_range.min() + 4 * EPS32)
    assert all(note is None for note in result.notes)


def test_gradients_start_at_the_target_layer(resnet18, images):
    """Nothing before the layer is differentiated: the stem's weights never see a gradient graph."""
    backend = backend_for(copy.deepcopy(resnet18), 10)
    seen = []
    handle = backend.module.layer3.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    handle4 = backend.module.fc.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    cam_method("gradcam")(backend, layer="layer4")(images, [ClassTarget(0)] * 3)
    handle.remove(), handle4.remove()
    assert seen == [False, True]


def test_normalised_is_min_max_after_resizing():
    """The convention: min–max (ε = 1e-7) of the map at input size, not of the low-resolution map."""
    low_res = torch.zeros(1, 5, 5)
    low_res[0, 2, 2] = 2.0  # an interior peak: upsampling ×4 (half-pixel centres) never reaches it
    maps = torch.nn.functional.interpolate(low_res[:, None], size=(20, 20), mode="bilinear",
                                           align_corners=False)[:, 0]
    explanation = Explanation("gradcam", "layer", (0,), "class", low_res, maps, torch.zeros(1, 2), (None,))
    expected = (maps - maps.min()) / (maps.max() - maps.min() + 1e-7)
    torch.testing.assert_close(explanation.normalised(), expected, atol=1e-7, rtol=0)
    assert explanation.normalised().max() > 1 - 1e-6 and maps.max() < 2.0 * 0.9
    blank = Explanation("gradcam", "layer", (0,), "class", low_res * 0, maps * 0, torch.zeros(1, 2), (None,))
    assert (blank.normalised() == 0).all()
