"""CAM maps and the metrics that compare them and measure their faithfulness (METHODS §5)."""
from .faithfulness import FaithfulnessResult, deletion_insertion
from .map_comparison import (
    MapComparison,
    MetricValue,
    compare_maps,
    energy_in_mask,
    pearson,
    pointing_game,
    spearman,
    top_fraction_iou,
)

__all__ = [
    "FaithfulnessResult",
    "MapComparison",
    "MetricValue",
    "compare_maps",
    "deletion_insertion",
    "energy_in_mask",
    "pearson",
    "pointing_game",
    "spearman",
    "top_fraction_iou",
]

from .base import BaseCAM, WeightedCAM
from .explanation import Explanation
from .registry import ARCHITECTURE_METHODS, CAM_METHODS, cam_method
from .reshape import ChannelsLast, ReshapeTransform, SpatialLayer, TokensAsImage, transform_for
from .targets import (TARGET_RULES, CamTarget, ClassTarget, ClassTargets, GradientSeed, HeadTarget, TargetRule,
                      as_target, resolve_targets, target_cotangent)

__all__ += [
    "BaseCAM", "WeightedCAM", "Explanation", "ARCHITECTURE_METHODS", "CAM_METHODS", "cam_method",
    "ChannelsLast", "ReshapeTransform", "SpatialLayer", "TokensAsImage", "transform_for",
    "TARGET_RULES", "CamTarget", "ClassTarget", "ClassTargets", "GradientSeed", "HeadTarget", "TargetRule", "as_target",
    "resolve_targets", "target_cotangent",
]
