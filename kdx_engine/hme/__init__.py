"""KDExplainer: a hierarchical mixture-of-experts student and its routing views (METHODS §8)."""
from .model import LEVEL_SIZES, LEVEL_WIDTHS, ExpertBlock, KDExplainerNet
from .routing import (
    REFERENCE_TEMPERATURE,
    RoutingTree,
    class_routing_paths,
    hard_tree,
    mean_routing_entropy,
    routing_logits,
    routing_matrices,
)

__all__ = [
    "LEVEL_SIZES", "LEVEL_WIDTHS", "REFERENCE_TEMPERATURE", "ExpertBlock", "KDExplainerNet",
    "RoutingTree", "class_routing_paths", "hard_tree", "mean_routing_entropy", "routing_logits",
    "routing_matrices",
]
