"""The notes a CAM gives a blank or broken map, one per image of the batch, in order of precedence."""
import math

import torch
import torch.nn as nn

from kdx_engine.cams import TargetRule, cam_method
from kdx_engine.cams.base import _map_notes
from conftest import backend_for


def test_each_map_of_a_batch_gets_its_own_note():
    raw = torch.ones(4, 3, 3)
    raw[1, 0, 0] = math.nan  # broken, even though its gradients are zero too
    raw[2] = -1.0  # negative everywhere
    grads = torch.ones(4, 2, 3, 3)
    grads[1] = 0.0
    grads[3] = 0.0  # zero gradients
    notes = _map_notes(raw, grads)
    assert notes[0] is None
    assert notes[1].startswith("map has non-finite values")
    assert notes[2].startswith("all-zero map: the weighted activations are negative")
    assert notes[3].startswith("all-zero map: the gradients at this layer are zero")
    assert _map_notes(raw[2:3], None) == (notes[2],)


def test_a_gradcam_batch_notes_only_the_blank_map():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 2))
    backend = backend_for(module.eval(), num_classes=2, input_size=8)
    x = torch.randn(3, 3, 8, 8)
    x[1] = 0.0
    with torch.no_grad():
        module[0].bias.fill_(-10.0)  # a zero image gives all-zero activations: the map is blank
        module[0].weight.mul_(100.0)
    explanation = cam_method("gradcam")(backend, layer="1")(x, TargetRule("predicted"))
    assert explanation.notes[1] is not None and explanation.notes[1].startswith("all-zero map")
    assert explanation.notes[0] is None and explanation.notes[2] is None
