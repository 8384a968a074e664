"""CAM methods by name, for the CLI and the window."""
from .ablation_cam import AblationCAM
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


def cam_method(name: str) -> type[BaseCAM]:
    """The CAM class registered under ``name`` (case-insensitive)."""
    key = name.lower()
    if key not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; use one of {', '.join(CAM_METHODS)}")
    return CAM_METHODS[key]
