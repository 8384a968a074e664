"""The demo's KDExplainer as a registered architecture, so its checkpoint loads by its fingerprint.

It registers from KDExplainer's own package: ``kdx_engine.models`` knows this module only by name
(its registry imports the plugin modules at the first lookup) and never imports KDExplainer code.
"""
from __future__ import annotations

from torch import nn

from ..models.architectures.demo_nets import DEMO_CLASSES, demo_preset
from ..models.registry import register_architecture
from .model import KDExplainerNet


@register_architecture("demo_kdexplainer", family="kdx_demo", preset=demo_preset("demo_kdexplainer"),
                       default_classes=DEMO_CLASSES)
def demo_kdexplainer(num_classes: int) -> nn.Module:
    """The demo's KDExplainer: levels of 2, 4 and 8 experts, one head per class."""
    return KDExplainerNet(num_classes)
