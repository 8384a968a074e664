"""Layer probe: candidate layers with shapes and strides, the automatic CAM layer, stages; hooks released."""
import pytest
import torch
import torchvision

from conftest import backend_for
from kdx_engine.models import PENULTIMATE, default_target_layer, probe_layers, stage_layers
from kdx_engine.models.registry import get_architecture


def _layers(model, classes, size):
    return probe_layers(backend_for(model.eval(), classes, size))


def test_resnet18_layers_default_and_stages():
    layers = _layers(torchvision.models.resnet18(num_classes=10), 10, 64)
    by_name = {layer.name: layer for layer in layers}
    assert by_name["layer4"].shape == (512, 2, 2) and by_name["layer4"].stride == 32
    assert by_name["conv1"].stride == 2 and by_name["layer1"].stride == 4
    assert default_target_layer(layers) == "layer4"
    assert stage_layers(layers) == ["layer1", "layer2", "layer3", "layer4"]
    # a Sequential and its last child return the same tensor: listed once, under the outer name
    assert "layer4.1" not in by_name


@pytest.mark.parametrize("name,default,stages", [
    ("resnet8x4", "layer3", ["layer1", "layer2", "layer3"]),
    ("wrn_16_2", "relu", ["block1", "block2", "block3"]),
    ("vgg8", None, None),
    ("MobileNetV2", None, None),
])
def test_cifar_families_have_a_spatial_default_and_stages(name, default, stages):
    layers = _layers(get_architecture(name).build(10), 10, 32)
    target = default_target_layer(layers)
    assert next(l for l in layers if l.name == target).is_spatial
    if default:
        assert target == default
    found = stage_layers(layers)
    assert len(found) >= 2
    if stages:
        assert found == stages
    # stages go deeper: strides never decrease
    strides = [next(l for l in layers if l.name == s).stride for s in found]
    assert strides == sorted(strides)


def test_no_spatial_layer_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(ValueError, match="no layer with a spatial output"):
        default_target_layer(_layers(model, 4, 8))


def test_hooks_are_released_when_the_model_fails():
    class Failing(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 2)
            self.fail = False

        def forward(self, x):
            if self.fail:
                raise RuntimeError("boom")
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    model = Failing()
    backend = backend_for(model, 2, 8)
    model.fail = True
    for kwargs in ({"layers": ["conv", PENULTIMATE]}, {"grad_layer": "conv"}):
        with pytest.raises(RuntimeError, match="boom"):
            backend.forward(torch.zeros(1, 3, 8, 8), **kwargs)
        assert not model.conv._forward_hooks and not model.fc._forward_pre_hooks
    assert torch.is_grad_enabled()
