"""Models whose output is probabilities (a final softmax), found once at load time and explained on their logits.

A map taken through a softmax is wrong: on a confident image the gradient of p_c vanishes (maps of 1e-8,
blank overlays), and log p_c = z_c − logsumexp(z) does not help, since its gradient Σ_j (δ_cj − p_j)∇z_j
vanishes too. So the logits are taken where the graph has them, at the input of the final
Softmax/LogSoftmax (ONNX node, TorchScript op or call, eager ``softmax`` call seen by a function mode).
Only where no such op exists (a hand-written exp/sum) is the log of the output used, with a note that its
maps follow log p, not the logits.

The outputs are named probabilities from their values on probe inputs: every row non-negative and summing
to 1 (or ≤ 0 with logsumexp 0), on a mean-grey image and three random images; a logits model does not
pass that by chance.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

LOGITS = "logits"
PROBABILITIES = "probabilities"
LOG_PROBABILITIES = "log-probabilities"
FROM_OUTPUT = "output"  # the output is the logits (or log-probabilities used as they are)
FROM_SOFTMAX_INPUT = "softmax input"  # the input of the final softmax
FROM_LOG = "log of output"  # log p: no softmax op to take the input of
PROBE_ROWS = 3  # random images beside the mean-grey one
MIN_SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; logits rows never do by chance


@dataclass(frozen=True)
class OutputKind:
    """What a model's output is (``kind``) and where its logits are taken from (``logits``); ``where`` names
    the softmax (``"node 'prob' (Softmax)"``, ``"aten::softmax"``) when the logits are its input."""

    kind: str = LOGITS
    logits: str = FROM_OUTPUT
    where: str = ""

    @property
    def is_logits(self) -> bool:
        return self.kind == LOGITS

    def describe(self) -> str:
        """One line for ``kdx info``, the model slot and the notes."""
        if self.kind == LOGITS:
            return "logits"
        if self.logits == FROM_SOFTMAX_INPUT:
            return f"{self.kind} (final softmax{f': {self.where}' if self.where else ''}): explained on its input, the logits"
        if self.kind == LOG_PROBABILITIES:
            return ("log-probabilities (no softmax op found): explained on them as they are; maps follow "
                    "log p, not the logits, and fade on confident images")
        return ("probabilities (no softmax op found): explained on their log; maps follow log p, not the "
                "logits, and fade on confident images")

    def to_json(self) -> dict:
        return {"kind": self.kind, "logits_from": self.logits, "where": self.where or None,
                "description": self.describe()}


LOGITS_OUTPUT = OutputKind()


def values_kind(output: torch.Tensor) -> str:
    """``PROBABILITIES``, ``LOG_PROBABILITIES`` or ``LOGITS`` for an N×K output (K ≥ 2, finite): rows
    non-negative summing to 1, or ≤ 0 with logsumexp 0, within the output dtype's rounding."""
    if output.dim() != 2 or output.shape[1] < 2 or not bool(torch.isfinite(output).all()):
        return LOGITS
    tolerance = max(MIN_SUM_TOLERANCE, 16 * torch.finfo(output.dtype).eps if output.is_floating_point() else 1.0)
    values = output.detach().double()
    if bool((values >= -tolerance / output.shape[1]).all()) and bool(((values.sum(1) - 1).abs() <= tolerance).all()):
        return PROBABILITIES
    if bool((values <= tolerance).all()) and bool((torch.logsumexp(values, 1).abs() <= tolerance).all()):
        return LOG_PROBABILITIES
    return LOGITS


def probe_inputs(size: int, mean, std, channels: int = 3, rows: int = PROBE_ROWS) -> list[torch.Tensor]:
    """One-image inputs (1×C×size×size, normalised): the mean-grey image, then ``rows`` images of uniform
    random pixels (seeded), each run alone so models exported with a batch of 1 take them."""
    generator = torch.Generator().manual_seed(0)
    mean_t = torch.tensor(mean[:channels], dtype=torch.float32).view(1, channels, 1, 1)
    std_t = torch.tensor(std[:channels], dtype=torch.float32).view(1, channels, 1, 1)
    images = [torch.zeros(1, channels, size, size)]
    for _ in range(rows):
        pixels = torch.rand(1, channels, size, size, generator=generator)
        images.append((pixels - mean_t) / std_t)
    return images


_SOFTMAX = {torch.softmax: PROBABILITIES, F.softmax: PROBABILITIES, torch.Tensor.softmax: PROBABILITIES,
            torch.log_softmax: LOG_PROBABILITIES, F.log_softmax: LOG_PROBABILITIES,
            torch.Tensor.log_softmax: LOG_PROBABILITIES,
            torch.ops.aten.softmax.int: PROBABILITIES, torch.ops.aten._softmax.default: PROBABILITIES,
            torch.ops.aten.log_softmax.int: LOG_PROBABILITIES,
            torch.ops.aten._log_softmax.default: LOG_PROBABILITIES}


class SoftmaxCalls(TorchFunctionMode):
    """While active, remembers the input of every softmax/log-softmax call by its output's id: the eager
    counterpart of reading the graph (``nn.Softmax``, ``F.softmax``, ``x.softmax``, an unflattened
    ``.pt2``'s ``aten.softmax``)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in _SOFTMAX and args and isinstance(args[0], torch.Tensor) and isinstance(result, torch.Tensor):
            self.calls.append((args[0], result, getattr(func, "__name__", str(func))))
        return result

    def input_of(self, output: torch.Tensor) -> tuple[torch.Tensor, str] | None:
        """The input of the softmax call that returned ``output`` (the same tensor), with the call's name."""
        for given, result, name in reversed(self.calls):
            if result is output and given.shape == output.shape:
                return given, name
        return None


def logits_from(output: torch.Tensor, kind: OutputKind) -> torch.Tensor:
    """The logits KDX explains, for a route that needs no graph: the log of probabilities (0 clamped to
    the smallest positive float, so an underflowed class is very unlikely, never −inf), else the output."""
    if kind.kind == PROBABILITIES and kind.logits == FROM_LOG:
        return torch.log(output.clamp_min(torch.finfo(output.dtype).tiny))
    return output
