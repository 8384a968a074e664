"""What the VAM views show (METHODS §7): per-layer attention matrices and their row entropy.

Everything is read from the θ tensors of a checkpoint (or of a model holding VAM convs), so a series
of training checkpoints is read the same way as the final one.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..checkpoints import checkpoint_state_dict
from .conv import THETA_SUFFIX, VAM_TEMPERATURE, attention_of, normalised_row_entropy


@dataclass(frozen=True)
class LayerAttention:
    """One VAM layer: its conv's name, A (G_out×G_in, rows sum to 1) and each row's entropy / log G_in."""

    layer: str
    attention: np.ndarray
    row_entropy: np.ndarray

    @property
    def mean_row_entropy(self) -> float:
        return float(self.row_entropy.mean())


def vam_thetas(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """θ by conv name, in checkpoint order, from a model or a state_dict."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    return {k[: -len(THETA_SUFFIX)]: v.detach().float().cpu() for k, v in state.items()
            if k.endswith(THETA_SUFFIX)}


def layer_attention(source: nn.Module | Mapping[str, torch.Tensor],
                    temperature: float = VAM_TEMPERATURE) -> list[LayerAttention]:
    """Attention matrix and normalised row entropy of every VAM layer, in depth order.

    Raises ``ValueError`` when ``source`` holds no VAM parameters (a plain or folded model).
    """
    thetas = vam_thetas(source)
    if not thetas:
        raise ValueError("no VAM parameters (vam_theta) found: this is not a VAM checkpoint "
                         "(a folded VAM export is a plain network and has no attention left)")
    layers = []
    for name, theta in thetas.items():
        attention = attention_of(theta, temperature)
        entropy = normalised_row_entropy(attention)
        layers.append(LayerAttention(name, attention.numpy(), entropy.numpy()))
    return layers


def entropy_by_depth(source: nn.Module | Mapping[str, torch.Tensor],
                     temperature: float = VAM_TEMPERATURE) -> dict[str, float]:
    """Mean normalised row entropy per VAM layer, in depth order (the line over depth)."""
    return {layer.layer: layer.mean_row_entropy for layer in layer_attention(source, temperature)}


def vam_checkpoint_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict of a VAM checkpoint file (``torch.save`` read with ``weights_only=True``, or
    safetensors); a file that would run code is refused with ``UntrustedPickleError``."""
    return checkpoint_state_dict(path)


def entropy_over_checkpoints(paths: Sequence[str | os.PathLike],
                             temperature: float = VAM_TEMPERATURE) -> np.ndarray:
    """Checkpoints × layers array of mean normalised row entropy (the view over training)."""
    rows = [list(entropy_by_depth(vam_checkpoint_state(p), temperature).values()) for p in paths]
    return np.array(rows, dtype=np.float64)
