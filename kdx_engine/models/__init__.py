"""Model loading and the backends behind one interface."""
from .backend import LOGITS, PENULTIMATE, Forward, LayerInfo, ModelBackend, ModelInfo
from .layers import default_target_layer, probe_layers, stage_layers
from .loading import ModelLoadError, UntrustedPickleError, check_same_classes, detect_format, load_model
from .preprocessing import Preprocessing, read_sidecar, write_sidecar
from .registry import architectures, fingerprint, get_architecture, register_architecture

__all__ = [
    "LOGITS", "PENULTIMATE", "Forward", "LayerInfo", "ModelBackend", "ModelInfo",
    "default_target_layer", "probe_layers", "stage_layers",
    "ModelLoadError", "UntrustedPickleError", "check_same_classes", "detect_format", "load_model",
    "Preprocessing", "read_sidecar", "write_sidecar",
    "architectures", "fingerprint", "get_architecture", "register_architecture",
]
