"""timm architectures (``timm:NAME``), built without weights (``pretrained=False``: nothing is downloaded).

The KD families people distil today are registered, so a state_dict of theirs is recognised from its
parameter names and shapes; any other model timm knows is built on request by ``get_architecture``
(``--arch timm:NAME``). Preprocessing comes from the model's own ``pretrained_cfg`` (input size, mean,
std, interpolation, crop_pct). A ViT or DeiT is fitted to the input size its position embedding was
trained at, so a Student trained at 64 px is recognised as well as one trained at 224 px.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Mapping

import timm
import torch
from torch import nn

from ...checkpoints import ModelLoadError
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, Preprocessing
from ..registry import Architecture, add_architecture, architecture_shapes, register_resolver

PREFIX = "timm:"
MAX_VIT_PATCHES = 4096  # a 64×64 grid (1024 px at patch 16): attention 4096² per head and layer
FAMILY = "timm"
# (timm name, what it is): the KD families recognised by fingerprint. DeiT and ViT of one size share
# parameter names and shapes (they differ in preprocessing only), so both are named when one matches.
RECOGNISED = (
    ("deit_tiny_patch16_224", "DeiT-Ti"),
    ("deit_small_patch16_224", "DeiT-S"),
    ("deit_base_patch16_224", "DeiT-B"),
    ("deit_tiny_distilled_patch16_224", "DeiT-Ti with distillation token"),
    ("deit_small_distilled_patch16_224", "DeiT-S with distillation token"),
    ("deit_base_distilled_patch16_224", "DeiT-B with distillation token"),
    ("vit_small_patch16_224", "ViT-S/16"),
    ("vit_base_patch16_224", "ViT-B/16"),
    ("swin_tiny_patch4_window7_224", "Swin-T"),
    ("convnext_tiny", "ConvNeXt-T"),
    ("efficientnet_b0", "EfficientNet-B0"),
    ("resnet50", "ResNet-50 (timm)"),
)
# Registered architectures whose parameter names and shapes are the same (they differ in preprocessing):
# a state_dict of one is recognised as both, the first registered named first.
SAME_LAYOUT = (
    ("resnet50", "timm:resnet50"),
    ("timm:deit_small_patch16_224", "timm:vit_small_patch16_224"),
    ("timm:deit_base_patch16_224", "timm:vit_base_patch16_224"),
)
MIN_CROPPED_SIZE = 96  # as the loader's fallback: smaller inputs are resized straight to the input size


def timm_preset(name: str, pretrained_cfg: Mapping, input_size: int | None = None) -> Preprocessing:
    """The preprocessing a timm model's ``pretrained_cfg`` describes: its input size (or ``input_size``),
    mean, std, interpolation, and the resize ``floor(size / crop_pct)`` before the centre crop (timm's
    evaluation transform); a ``squash`` crop mode, or an input under 96 px, resizes straight to the size."""
    size = int(input_size or pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(pretrained_cfg.get("crop_pct") or 1.0)
    squash = pretrained_cfg.get("crop_mode", "center") == "squash"
    resize = None if squash or size < MIN_CROPPED_SIZE else max(size, math.floor(size / crop_pct))
    mean, std = tuple(pretrained_cfg.get("mean") or ()), tuple(pretrained_cfg.get("std") or ())
    if len(mean) != 3 or len(std) != 3:  # a one-channel model's statistics: the RGB defaults instead
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    interpolation = str(pretrained_cfg.get("interpolation", "bilinear"))
    return Preprocessing(
        input_size=size, resize=resize, mean=mean, std=std,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bilinear",  # "random": training only
        architecture=PREFIX + name, source="family-preset")


@dataclass(frozen=True)
class TimmArchitecture(Architecture):
    """A timm model by name, with the keyword options (``img_size``) it is built with."""

    timm_name: str = ""
    options: tuple[tuple[str, object], ...] = ()

    def build(self, num_classes: int | None = None) -> nn.Module:
        options = dict(self.options)
        if torch.empty(()).is_meta:  # a shapes-only build: ViT and Swin can skip their (slow, pointless) init
            try:
                return create_timm_model(self.timm_name, num_classes or self.default_classes, weight_init="skip",
                                         **options)
            except TypeError:  # a family without the option
                pass
        return create_timm_model(self.timm_name, num_classes or self.default_classes, **options)

    @property
    def cache_key(self) -> str:
        return self.name + "".join(f";{k}={v}" for k, v in self.options)

    def fitted_to(self, shapes: Mapping[str, tuple[int, ...]]) -> "TimmArchitecture":
        """A ViT/DeiT built for the input size its ``pos_embed`` holds (prefix tokens + grid²); only when
        its patch embedding is this architecture's and only the position embedding's length differs."""
        reference = architecture_shapes(self, self.default_classes)
        patch = "patch_embed.proj.weight"
        if reference.get(patch) != shapes.get(patch) or reference.get("pos_embed") == shapes.get("pos_embed"):
            return self
        size = _vit_input_size(self, shapes)
        if size is None or size == self.preset.input_size:
            return self
        patches = (size // shapes[patch][2]) ** 2
        if patches > MAX_VIT_PATCHES:
            raise ModelLoadError(
                f"the position embedding of this {self.name} implies {size}×{size} px inputs ({patches:,} patches); "
                f"KDX refuses more than {MAX_VIT_PATCHES:,} patches, whose attention would not fit in memory")
        preset = timm_preset(self.timm_name, _pretrained_cfg(self.timm_name), size)
        return dataclasses.replace(self, preset=preset, options=(*self.options, ("img_size", size)))


_CFG_CACHE: dict[str, dict] = {}
_PREFIX_TOKENS: dict[str, int] = {}


def _pretrained_cfg(name: str) -> dict:
    """timm's default pretrained_cfg of ``name`` as a dict (read from timm's tables; nothing is fetched)."""
    if name not in _CFG_CACHE:
        cfg = timm.get_pretrained_cfg(name)
        _CFG_CACHE[name] = dict(cfg.to_dict()) if cfg is not None else {}
    return _CFG_CACHE[name]


def _vit_input_size(arch: TimmArchitecture, shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """The input size implied by a ViT state_dict's position embedding and patch size, or None."""
    pos, patch = shapes.get("pos_embed"), shapes.get("patch_embed.proj.weight")
    if pos is None or patch is None or len(pos) != 3 or len(patch) != 4 or patch[2] != patch[3]:
        return None
    if arch.name not in _PREFIX_TOKENS:
        with torch.device("meta"):
            module = arch.build()
        embeds_prefix = not getattr(module, "no_embed_class", False)
        _PREFIX_TOKENS[arch.name] = int(getattr(module, "num_prefix_tokens", 0)) if embeds_prefix else 0
    prefix = _PREFIX_TOKENS[arch.name]
    side = math.isqrt(max(pos[1] - prefix, 0))
    if side < 1 or side * side + prefix != pos[1]:
        return None
    return side * patch[2]


def same_layout_as(name: str) -> list[str]:
    """The other registered architectures with exactly the parameters of ``name`` (see ``SAME_LAYOUT``)."""
    return [other for group in SAME_LAYOUT if name in group for other in group if other != name]


def create_timm_model(timm_name: str, num_classes: int, **options) -> nn.Module:
    """timm's model ``timm_name`` with random weights: ``pretrained=False``, so nothing is downloaded."""
    return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, **options)


def timm_architecture(timm_name: str) -> TimmArchitecture:
    """The architecture ``timm:timm_name`` (any model timm knows), with its pretrained_cfg preset."""
    cfg = _pretrained_cfg(timm_name)
    return TimmArchitecture(PREFIX + timm_name, FAMILY, partial(create_timm_model, timm_name),
                            timm_preset(timm_name, cfg), int(cfg.get("num_classes") or 1000), timm_name=timm_name)


def _resolve(name: str) -> TimmArchitecture | None:
    """``timm:NAME`` for any model name timm lists (no weights are ever fetched)."""
    timm_name = name[len(PREFIX):]
    if not timm_name or not timm.is_model(timm_name):
        return None
    return timm_architecture(timm_name)


def timm_model_names() -> list[str]:
    """Every model timm can build, as ``timm:NAME`` (for the window's architecture list)."""
    return [PREFIX + name for name in timm.list_models()]


for _name, _description in RECOGNISED:
    add_architecture(timm_architecture(_name))
register_resolver(PREFIX, _resolve)
