"""The logits in a model's output: a tensor, a tuple such as ``(logits, feats)`` or ``(log_softmax,
logits)``, or a dict / Hugging Face ``ModelOutput`` with a ``logits`` entry."""
from __future__ import annotations

from collections.abc import Mapping

import torch

DISTRIBUTION_TOLERANCE = 1e-3  # rows of a float32 softmax sum to 1 within ~1e-6; logits never do by chance
LOGITS_KEYS = ("logits", "logit", "output", "out", "pred", "preds", "y")


def first_tensor(output) -> torch.Tensor | None:
    """The first tensor in a (possibly nested) tuple/list/dict output, or the output itself."""
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def logits_of(output) -> torch.Tensor:
    """The logits in a model's output (see ``chosen_output``)."""
    return chosen_output(output)[0]


def chosen_output(output) -> tuple[torch.Tensor, str | None]:
    """The N×K logits in a model's output and, when that is not the output itself, which part was taken
    (for the notes). A tensor is itself; a dict or ``ModelOutput`` gives its ``logits`` entry; among the
    2-D tensors at the top level of a tuple (or of a dict without ``logits``), the first that is not
    probabilities or log-probabilities (rows summing to 1, or ≤ 0 with logsumexp 0), else the first:
    RepDistiller's ``(feats, logits)``, mdistiller's ``(logits, feats)`` and ``(log_softmax, logits)`` all
    give the logits."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, Mapping):
        for key in LOGITS_KEYS:
            value = output.get(key)
            if isinstance(value, torch.Tensor) and value.dim() == 2:
                return value, f"output {key!r} of the model's {type(output).__name__}"
        named = [(repr(k), v) for k, v in output.items() if isinstance(v, torch.Tensor) and v.dim() == 2]
        where = f"of the model's {type(output).__name__}"
    elif isinstance(output, (tuple, list)):
        named = [(str(i), v) for i, v in enumerate(output) if isinstance(v, torch.Tensor) and v.dim() == 2]
        where = f"of the model's {len(output)}-{type(output).__name__}"
    else:
        named = []
    if not named:
        raise ValueError(f"model output of type {type(output).__name__} holds no N×K logits tensor")
    kinds = [_distribution_kind(v) if len(named) > 1 else None for _, v in named]
    index = next((i for i, kind in enumerate(kinds) if kind is None), 0)
    label = "output" if isinstance(output, Mapping) else "element"
    said = [f"{label} {named[i][0]} is {kind}" for i, kind in enumerate(kinds) if kind and i != index]
    return named[index][1], f"{label} {named[index][0]} {where}" + (f" ({'; '.join(said)})" if said else "")


def _distribution_kind(values: torch.Tensor) -> str | None:
    """``"probabilities"`` or ``"log-probabilities"`` when every row is one, else None."""
    with torch.no_grad():
        values = values.detach().float()
        if values.numel() == 0 or not bool(torch.isfinite(values).all()):
            return None
        if bool((values >= 0).all()) and bool(((values.sum(1) - 1).abs() < DISTRIBUTION_TOLERANCE).all()):
            return "probabilities"
        if bool((values <= DISTRIBUTION_TOLERANCE).all()) and \
                bool((torch.logsumexp(values, 1).abs() < DISTRIBUTION_TOLERANCE).all()):
            return "log-probabilities"
    return None
