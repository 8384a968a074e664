"""Model loading and the backends behind one interface."""
from .backend import (
    INPUT, LOGITS, PENULTIMATE, Forward, LayerError, LayerInfo, ModelBackend, ModelInfo, UnknownLayerError,
)
from .layers import default_target_layer, probe_layers, stage_layers, target_layer_or_reason
from .loading import (
    ModelLoadError, NonFiniteLogitsError, UntrustedPickleError, check_finite_logits, check_same_classes,
    detect_format, load_model, models_in_file,
)
from .preprocessing import Preprocessing, preprocessing_difference, read_sidecar, write_sidecar
from .registry import (
    architecture_families,
    fingerprint,
    get_architecture,
    register_architecture,
    registered_architectures,
)


def timm_model_names() -> list[str]:
    """Every model timm can build, as ``timm:NAME`` (timm imported only when asked)."""
    from .architectures.timm_family import timm_model_names as names

    return names()


__all__ = [
    "INPUT", "LOGITS", "PENULTIMATE", "Forward", "LayerError", "LayerInfo", "ModelBackend", "ModelInfo", "UnknownLayerError",
    "default_target_layer", "probe_layers", "stage_layers", "target_layer_or_reason",
    "ModelLoadError", "NonFiniteLogitsError", "UntrustedPickleError", "check_finite_logits", "check_same_classes",
    "detect_format", "load_model", "models_in_file", "preprocessing_difference",
    "Preprocessing", "read_sidecar", "write_sidecar",
    "timm_model_names", "architecture_families", "fingerprint", "get_architecture", "register_architecture", "registered_architectures",
]
