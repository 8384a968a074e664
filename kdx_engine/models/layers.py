"""Layer discovery by a shape probe: candidate layers for a picker, the default CAM layer, and stages.

Works on any backend: one forward of a blank image records every layer's output shape.
"""
from __future__ import annotations

import re
import weakref

import torch

from .backend import CHW, HWC, TOKENS, LayerInfo, ModelBackend, is_head_input


_PROBED: "weakref.WeakKeyDictionary[ModelBackend, list[LayerInfo]]" = weakref.WeakKeyDictionary()


def probe_layers(backend: ModelBackend) -> list[LayerInfo]:
    """Every layer with a tensor output, in execution order (probed once per backend)."""
    if backend not in _PROBED:
        _PROBED[backend] = _probe(backend)
    return list(_PROBED[backend])


def _probe(backend: ModelBackend) -> list[LayerInfo]:
    """Every layer with a tensor output, in execution order, with (C, H, W) shape and stride.

    Layers that return the very same tensor as an enclosing layer (a Sequential and its last child)
    are listed once, under the outer name; layers called more than once are left out.
    """
    size = backend.info.preprocessing.input_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    names = [n for n in backend.layer_names() if not is_head_input(n)]
    order = _execution_order(backend, x, names)
    result = backend.forward(x, order)
    order = [name for name in order if name in result.activations]  # a traced identity may give no tensor
    keys = {}
    for name in order:
        value = result.activations[name]
        keys[name] = (tuple(value.shape), float(value.double().sum()), float(value.double().square().sum()))
    layers = []
    grid = None  # the latest layer's h×w on the image: patch tokens that follow lie on it
    for name in order:
        value = result.activations[name]
        layout, layer_grid, prefix = _layout(tuple(value.shape[1:]), grid) if value.shape[0] == 1 else (None, None, 0)
        grid = layer_grid or grid
        if any(_is_descendant(name, other) and keys[other] == keys[name] for other in order):
            continue  # the same tensor as an enclosing layer's output: listed under the outer name
        stride = size // layer_grid[0] if layer_grid and layer_grid[0] > 0 else None
        layers.append(LayerInfo(name, tuple(value.shape[1:]), stride, layout, layer_grid, prefix))
    return layers


MAX_PREFIX_TOKENS = 8  # class, distillation and register tokens before a transformer's patch tokens


def _layout(shape: tuple[int, ...], grid: tuple[int, int] | None):
    """(layout, h×w grid, prefix tokens) of one image's layer output, inputs being square: C×H×W has
    H = W, a Swin stage's H×W×C has H = W ≠ C; T×C tokens are ``prefix`` + the latest grid's h·w
    tokens (the patch embedding's grid for a ViT, the stage's for Swin). (None, None, 0): not an image."""
    if len(shape) == 3:
        a, b, c = shape
        if b == c:
            return CHW, (b, c), 0
        if a == b:
            return HWC, (a, b), 0
        return None, None, 0
    if len(shape) == 2 and grid is not None:
        prefix = shape[0] - grid[0] * grid[1]
        if 0 <= prefix <= MAX_PREFIX_TOKENS:
            return TOKENS, grid, prefix
    return None, None, 0


def _execution_order(backend: ModelBackend, x: torch.Tensor, names: list[str]) -> list[str]:
    order = getattr(backend, "execution_order", None)
    if order is not None:
        return order(x, names)
    return names


def _is_descendant(name: str, ancestor: str) -> bool:
    return name.startswith(ancestor + ".")


def spatial_layers(layers: list[LayerInfo]) -> list[LayerInfo]:
    return [layer for layer in layers if layer.is_spatial]


def default_target_layer(layers: list[LayerInfo]) -> str:
    """The last layer whose output still has spatial size > 1 (METHODS.md §5). In a ViT or DeiT, whose
    head reads the class token only, patch tokens after the last attention no longer reach the logits:
    there it is the last block's first norm (``blocks[-1].norm1``, as pytorch-grad-cam's docs use)."""
    spatial = spatial_layers(layers)
    if not spatial:
        raise ValueError("the model has no layer with a spatial output; CAM methods need one")
    before_last_attention = [layer for layer in spatial if layer.layout == TOKENS and layer.prefix_tokens > 0
                             and layer.name.rsplit(".", 1)[-1] == "norm1"]
    if before_last_attention:
        return before_last_attention[-1].name
    return spatial[-1].name


def target_layer_or_reason(layers: list[LayerInfo]) -> tuple[str | None, str | None]:
    """``(default_target_layer(layers), None)``, or ``(None, why)`` when the model has no layer a CAM can use."""
    try:
        return default_target_layer(layers), None
    except ValueError as exc:
        return None, str(exc)


_STAGE_NAME = re.compile(r"^(layer|block|stage)(\d+|s\.\d+)$")  # layer4, blocks.11 (ViT), layers.3 (Swin), stages.3
# timm's sequence of stages: the probe lists its last stage under the container's name (the same tensor)
_STAGE_CONTAINERS = ("blocks", "layers", "stages")


def stage_layers(layers: list[LayerInfo]) -> list[str]:
    """Stages for FSS/RS (METHODS.md §2): ResNet-style ``layerN``/``blockN``/``stageN`` children, or timm's
    ``blocks.N`` (ViT, DeiT: every block), ``layers.N`` (Swin), ``stages.N`` (ConvNeXt) when the model has them, else the last layer before each spatial downsampling
    (the input resolution left out)."""
    spatial = spatial_layers(layers)
    numbered = {layer.name for layer in spatial if _STAGE_NAME.match(layer.name)}
    named = [layer.name for layer in spatial if layer.name in numbered or layer.name in _STAGE_CONTAINERS
             and any(name.startswith(layer.name + ".") for name in numbered)]
    if len(named) >= 2:
        return named
    last_at_resolution: dict[tuple[int, int], str] = {}
    for layer in spatial:
        last_at_resolution[layer.grid] = layer.name
    input_size = max((layer.grid[0] * (layer.stride or 1) for layer in spatial), default=0)
    return [name for res, name in last_at_resolution.items() if res[0] != input_size or len(last_at_resolution) == 1]
