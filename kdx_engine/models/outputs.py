"""Unwrapping of tuple outputs: ``(logits, feats)`` models and tuple-returning stages."""
from __future__ import annotations

import torch


def first_tensor(output) -> torch.Tensor | None:
    """The first tensor in a (possibly nested) tuple/list/dict output, or the output itself."""
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def logits_of(output) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, or the first 2-D tensor at the top level of a
    tuple (RepDistiller's ``(feats, logits)`` and mdistiller's ``(logits, feats)`` both work)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.dim() == 2:
                return item
    raise ValueError(f"model output of type {type(output).__name__} holds no N×K logits tensor")
