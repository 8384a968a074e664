"""Attention rollout (Abnar & Zuidema, 2020), a ViT-only map: the attention of every block, averaged over
heads, with the residual path added (``(A + I) / 2``, rows renormalised), multiplied from the first block
to the last; the map is the class token's row over the patch tokens, on the patch grid. It needs no
gradients and no class: every target gets the same map (the targets are recorded all the same).

The attention probabilities are read from timm's ``Attention`` modules (``…attn.attn_drop``'s output),
with the fused kernel turned off for the pass, which computes the same attention explicitly.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ..models.backend import TOKENS
from ..models.layers import probe_layers
from .base import BaseCAM
from .explanation import Explanation
from .targets import CamTarget

HEAD_FUSIONS = ("mean", "max", "min")


class AttentionRollout(BaseCAM):
    """Rollout of a ViT/DeiT's attention; ``layer``, when it names an attention module, is the last one
    rolled out (default, and for any other layer: every block), ``head_fusion`` how heads are combined (mean by default, as the paper), and
    ``discard_ratio`` the share of the weakest attention weights dropped per block (0: none)."""

    name = "rollout"
    uses_gradients = False

    def __init__(self, backend, layer: str | None = None, batch_size: int = 32, reshape_transform=None,
                 head_fusion: str = "mean", discard_ratio: float = 0.0):
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"unknown head fusion {head_fusion!r}; use one of {', '.join(HEAD_FUSIONS)}")
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
        self.backend = backend
        self.attention_layers = attention_layers(backend)
        names = [name.rsplit(".", 1)[0] for name in self.attention_layers]
        if layer in names or layer in self.attention_layers:  # another layer (a CAM's) means: every block
            last = names.index(layer) if layer in names else self.attention_layers.index(layer)
            self.attention_layers = self.attention_layers[: last + 1]
        self.layer = self.attention_layers[-1].rsplit(".", 1)[0]
        self.batch_size, self.head_fusion, self.discard_ratio = batch_size, head_fusion, discard_ratio
        self.reshape_transform = None
        self.grid, self.prefix = _patch_grid(backend)

    def run_forward(self, x: torch.Tensor, layers=()):
        with explicit_attention(self.backend):
            return self.backend.forward(x, [*self.attention_layers, *layers])

    def explain_forward(self, forward, target: CamTarget, size: tuple[int, int],
                        x: torch.Tensor | None = None) -> Explanation:
        seed = target.seed(forward)
        rolled = self.rollout([forward.activations[name] for name in self.attention_layers])
        height, width = self.grid
        low_res = rolled[:, 0, self.prefix:].reshape(-1, height, width)
        maps = F.interpolate(low_res[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        notes = tuple(None if torch.isfinite(m).all() and (m > 0).any() else "rollout map is blank or non-finite"
                      for m in low_res)
        return Explanation(method=self.name, layer=self.layer, targets=seed.indices, target_rule=seed.rule,
                           low_res=low_res, maps=maps, logits=forward.logits, notes=notes,
                           details={"rollout": {"blocks": len(self.attention_layers), "head_fusion": self.head_fusion,
                                                "discard_ratio": self.discard_ratio,
                                                "class_agnostic": True}})

    def rollout(self, attentions: list[torch.Tensor]) -> torch.Tensor:
        """N×T×T product of the residual-corrected, head-fused attentions, first block first."""
        result = None
        for attention in attentions:
            heads = attention.to(torch.float64)
            fused = heads.mean(dim=1) if self.head_fusion == "mean" else getattr(heads, self.head_fusion)(dim=1).values
            if self.discard_ratio > 0:
                fused = _discarded(fused, self.discard_ratio, self.prefix)
            eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
            step = (fused + eye) / 2
            step = step / step.sum(dim=-1, keepdim=True)
            result = step if result is None else step @ result
        return result.to(torch.float32)

    def cam_image(self, x, activations, grads, targets) -> torch.Tensor:
        """Not used: rollout combines attentions, not a layer's channels (``explain_forward``)."""
        raise TypeError("AttentionRollout builds its maps in explain_forward")


def _discarded(fused: torch.Tensor, ratio: float, prefix: int) -> torch.Tensor:
    """The weakest ``ratio`` of each image's attention weights set to zero (the class token's own kept)."""
    flat = fused.flatten(1).clone()
    count = int(flat.shape[1] * ratio)
    if count:
        _, weakest = flat.topk(count, dim=1, largest=False)
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep.scatter_(1, weakest, False)
        keep[:, 0] = True
        flat = flat * keep
    return flat.reshape(fused.shape)


def attention_layers(backend) -> list[str]:
    """The ``…attn.attn_drop`` layers of a timm ViT/DeiT (their output is the softmaxed attention while
    the fused kernel is off), in block order; ValueError when the model has none."""
    module = getattr(backend, "module", None)
    found = [] if module is None else [f"{name}.attn_drop" for name, child in module.named_modules()
                                       if hasattr(child, "fused_attn") and hasattr(child, "attn_drop")
                                       and hasattr(child, "qkv")]
    if not found:
        raise ValueError("attention rollout needs a ViT/DeiT in PyTorch whose attention modules it can read "
                         "(timm's Attention); this model has none")
    return found


def _patch_grid(backend) -> tuple[tuple[int, int], int]:
    """The patch grid and the prefix (class, distillation) tokens, from the shape probe."""
    for layer in probe_layers(backend):
        if layer.layout == TOKENS and layer.prefix_tokens > 0:
            return tuple(layer.grid), layer.prefix_tokens
    raise ValueError("attention rollout needs a ViT/DeiT with a class token; this model has no token layer "
                     "with one")


@contextmanager
def explicit_attention(backend):
    """timm's attention computed explicitly (softmax then ``attn_drop``) for the pass, not fused."""
    modules = [m for m in backend.module.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]
    saved = [m.fused_attn for m in modules]
    try:
        for m in modules:
            m.fused_attn = False
        yield
    finally:
        for m, value in zip(modules, saved):
            m.fused_attn = value
