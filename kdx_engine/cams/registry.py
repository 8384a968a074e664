"""CAM methods by name, for the CLI and the window."""
from .ablation_cam import AblationCAM
from .attention_rollout import AttentionRollout
from .base import BaseCAM
from .grad_cam import GradCAM
from .grad_cam_pp import GradCAMPlusPlus
from .hires_cam import HiResCAM
from .layer_cam import LayerCAM
from .score_cam import ScoreCAM
from .xgrad_cam import XGradCAM

CAM_METHODS: dict[str, type[BaseCAM]] = {
    cls.name: cls for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, ScoreCAM, AblationCAM)
}
# Methods for some architectures only (attention rollout: ViT/DeiT); they say so when a model has none.
ARCHITECTURE_METHODS: dict[str, type[BaseCAM]] = {AttentionRollout.name: AttentionRollout}


def cam_method(name: str) -> type[BaseCAM]:
    """The CAM class registered under ``name`` (case-insensitive), including the architecture-specific ones."""
    key = name.lower()
    methods = {**CAM_METHODS, **ARCHITECTURE_METHODS}
    if key not in methods:
        raise ValueError(f"unknown CAM method {name!r}; use one of {', '.join(methods)}")
    return methods[key]
