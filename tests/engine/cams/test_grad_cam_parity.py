"""Grad-CAM, Grad-CAM++ and LayerCAM equal the grad-cam package on the same model, layer and targets."""
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
from kdx_engine.cams import ClassTarget, cam_method

PAIRS = [("gradcam", RefGradCAM), ("gradcam++", RefGradCAMPlusPlus), ("layercam", RefLayerCAM),
         ("xgradcam", RefXGradCAM)]


@pytest.mark.parametrize("name,reference", PAIRS)
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_cam_matches_pytorch_grad_cam_on_resnet18(resnet18, images, name, reference, layer):
    classes = [3, 7, 1]
    ref_model = copy.deepcopy(resnet18)
    with reference(model=ref_model, target_layers=[dict(ref_model.named_modules())[layer]]) as cam:
        expected = cam(input_tensor=images, targets=[ClassifierOutputTarget(k) for k in classes])

    ours = cam_method(name)(backend_for(copy.deepcopy(resnet18), 10), layer=layer)
    result = ours(images, [ClassTarget(k) for k in classes])

    got = result.normalised().numpy()
    # grad-cam scales a second time when it aggregates layers: same map up to its 1e-7 ε
    got = got - got.min(axis=(1, 2), keepdims=True)
    got = got / (1e-7 + got.max(axis=(1, 2), keepdims=True))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
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
