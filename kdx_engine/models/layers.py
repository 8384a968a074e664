"""Layer discovery by a shape probe: candidate layers for a picker, the default CAM layer, and stages.

Works on any backend: one forward of a blank image records every layer's output shape.
"""
from __future__ import annotations

import re
import weakref

import torch

from .backend import PENULTIMATE, LayerInfo, ModelBackend


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
    names = [n for n in backend.layer_names() if n != PENULTIMATE]
    order = _execution_order(backend, x, names)
    result = backend.forward(x, order)
    keys = {}
    for name in order:
        value = result.activations[name]
        keys[name] = (tuple(value.shape), float(value.double().sum()), float(value.double().square().sum()))
    layers = []
    for name in order:
        if any(_is_descendant(name, other) and keys[other] == keys[name] for other in order):
            continue  # the same tensor as an enclosing layer's output: listed under the outer name
        shape = tuple(result.activations[name].shape[1:])
        stride = size // shape[1] if len(shape) == 3 and shape[1] > 0 else None
        layers.append(LayerInfo(name, shape, stride))
    return layers


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
    """The last layer whose output still has spatial size > 1 (METHODS.md §5)."""
    spatial = spatial_layers(layers)
    if not spatial:
        raise ValueError("the model has no layer with a spatial output; CAM methods need one")
    return spatial[-1].name


_STAGE_NAME = re.compile(r"^(layer|block|stage)\d+$")


def stage_layers(layers: list[LayerInfo]) -> list[str]:
    """Stages for FSS/RS (METHODS.md §2): ResNet-style ``layerN``/``blockN``/``stageN`` children when the
    model has them, else the last layer before each spatial downsampling (the input resolution left out)."""
    spatial = spatial_layers(layers)
    named = [layer.name for layer in spatial if _STAGE_NAME.match(layer.name)]
    if len(named) >= 2:
        return named
    last_at_resolution: dict[tuple[int, int], str] = {}
    for layer in spatial:
        last_at_resolution[layer.shape[1:]] = layer.name
    input_size = max((layer.shape[1] * (layer.stride or 1) for layer in spatial), default=0)
    return [name for res, name in last_at_resolution.items() if res[0] != input_size or len(last_at_resolution) == 1]
