"""VAM: virtual attention inside convolutions, its exact fold for export, and its views (METHODS §7)."""
from .attention import (
    LayerAttention,
    entropy_by_depth,
    entropy_over_checkpoints,
    layer_attention,
    vam_checkpoint_state,
    vam_thetas,
)
from .conv import (
    THETA_SUFFIX,
    VAM_TEMPERATURE,
    VAMConv2d,
    add_vam,
    attention_of,
    effective_weight,
    fold_vam,
    folded_state_dict,
    has_vam_parameters,
    normalised_row_entropy,
    vam_convs,
    vam_entropy_penalty,
)

__all__ = [
    "THETA_SUFFIX", "VAM_TEMPERATURE", "LayerAttention", "VAMConv2d", "add_vam", "attention_of",
    "effective_weight", "entropy_by_depth", "entropy_over_checkpoints", "fold_vam",
    "folded_state_dict", "has_vam_parameters", "layer_attention", "normalised_row_entropy",
    "vam_checkpoint_state", "vam_convs", "vam_entropy_penalty", "vam_thetas",
]
