"""The demo's VAM Student as a registered architecture, so a VAM checkpoint loads by its fingerprint.

It registers from VAM's own package: ``kdx_engine.models`` knows this module only by name (its
registry imports the plugin modules at the first lookup) and never imports VAM code.
"""
from __future__ import annotations

from torch import nn

from ..models.architectures.demo_nets import DEMO_CLASSES, STUDENT_WIDTHS, DemoResNet, demo_preset
from ..models.registry import register_architecture
from .conv import add_vam

VAM_GROUPS = 4


@register_architecture("demo_resnet_small_vam", family="kdx_demo",
                       preset=demo_preset("demo_resnet_small_vam"), default_classes=DEMO_CLASSES)
def demo_resnet_small_vam(num_classes: int) -> nn.Module:
    """The VAM Student before folding: ``demo_resnet_small`` with a ``vam_theta`` beside each
    convolution after the stem (its state_dict is the checkpoint the attention views read)."""
    model = DemoResNet(STUDENT_WIDTHS, num_classes)
    add_vam(model, groups=VAM_GROUPS)
    return model
