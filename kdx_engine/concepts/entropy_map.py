"""The per-image entropy map of one model at one layer (METHODS §6, Cheng et al.).

A G×G grid of noise scales σ (cells shared by the colour channels, in normalised-input units) is
learned by plain SGD on σ itself, minimising

    L(σ) = E_ε ‖f(x + up(σ)⊙ε) − f(x)‖² / s_f − λ · mean_c H_c,   H_c = log σ_c + ½ log(2πe),

with s_f the same feature error at uniform σ = σ_init. Each step draws B noise images at once (one
batched forward and one batched VJP back to the input through the backend interface, so PyTorch,
TorchScript and ONNX models all work where their backend differentiates to the input). λ is multiplied
by ``lam_factor`` once, before step ``lam_step``, when the mean entropy is still below the target; of the
σ after each step, the one whose mean entropy is closest to the target is kept.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from kdx_engine.jobs import Progress
from kdx_engine.models.backend import INPUT, ModelBackend

HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)
METHOD = "sampled (Cheng et al., published-code settings)"


@dataclass(frozen=True)
class EntropySettings:
    """The σ optimisation's settings; the defaults are the authors' published-code settings (METHODS §6)."""

    grid: int = 16
    draws: int = 96
    lr: float = 1e-4
    steps: int = 80
    lam: float = 6.0
    lam_factor: float = 1.5
    lam_step: int = 59
    target: float = -2.8
    sigma_init: float = 0.01
    sigma_min: float = 0.001
    sigma_max: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [(self.grid >= 1, "grid must be at least 1"), (self.draws >= 1, "draws must be at least 1"),
                  (self.steps >= 1, "steps must be at least 1"), (self.lr > 0, "lr must be positive"),
                  (self.lam >= 0, "lambda must be ≥ 0"), (self.lam_factor > 0, "lambda factor must be positive"),
                  (0 < self.sigma_min <= self.sigma_init <= self.sigma_max,
                   "need 0 < sigma_min ≤ sigma_init ≤ sigma_max")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"entropy-map settings: {message}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class EntropyMap:
    """One image's result: the kept step's cell entropies (G×G) and σ, and the run's history.

    ``mean_entropy[k]``, ``loss[k]`` and ``lam[k]`` belong to σ after step k+1 (loss: the objective at
    the σ the step started from); ``step`` is the kept step (1-based)."""

    entropy: np.ndarray
    sigma: np.ndarray
    step: int
    mean_entropy: np.ndarray
    loss: np.ndarray
    lam: np.ndarray
    feature_scale: float
    layer: str
    method: str = METHOD
    notes: tuple[str, ...] = field(default=())


def cell_entropy(sigma: torch.Tensor) -> torch.Tensor:
    """H_c = log σ_c + ½ log(2πe): the entropy of a Gaussian of scale σ_c."""
    return torch.log(sigma) + HALF_LOG_2PI_E


def upsample_cells(sigma: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """σ on the G×G grid (…×G×G) spread over the input's pixels (nearest cell), shaped 1×1×H×W."""
    return F.interpolate(sigma.reshape(1, 1, *sigma.shape[-2:]), size=size, mode="nearest")


class _FeatureError:
    """‖f(x + noise) − f(x)‖² per draw at ``layer`` and its gradient with respect to the noise."""

    def __init__(self, backend: ModelBackend, x: torch.Tensor, layer: str):
        self.backend, self.x, self.layer = backend, x, layer
        self.clean = backend.forward(x, layers=[layer]).activations[layer].to(x.device)

    def errors(self, noise: torch.Tensor) -> torch.Tensor:
        out = self.backend.forward(self.x + noise, layers=[self.layer]).activations[self.layer].to(noise.device)
        return (out - self.clean).flatten(1).pow(2).sum(1)

    def mean_and_gradient(self, noise: torch.Tensor, scale: float) -> tuple[float, torch.Tensor]:
        """mean_b ‖f(x + noise_b) − f(x)‖² / scale and its gradient with respect to ``noise``."""
        forward = self.backend.forward(self.x + noise, layers=[self.layer], grad_layer=INPUT)
        diff = forward.activations[self.layer].to(noise.device) - self.clean
        count = noise.shape[0]
        value = float(diff.flatten(1).pow(2).sum(1).mean()) / scale
        cotangent = diff * (2.0 / (count * scale))
        return value, forward.vjp({self.layer: cotangent}).to(noise.device)


def entropy_map(backend: ModelBackend, x: torch.Tensor, layer: str, settings: EntropySettings = EntropySettings(),
                progress: Progress | None = None, on_step: Callable[[int, int], None] | None = None) -> EntropyMap:
    """The entropy map of one preprocessed image ``x`` (1×3×H×W or 3×H×W) for ``backend`` at ``layer``.

    The noise draws come from a generator seeded with ``settings.seed``: every image and model sees
    the same draws. ``progress.check()`` runs before every step, so a cancel stops within one step;
    ``on_step(k, steps)`` is called after it (k = 0 … steps − 1), for a finer progress bar. The work is in
    float32, or in float64 when ``x`` is float64 (a reference run of a float64 PyTorch model; same draws)."""
    s = settings
    device = backend.device
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = (x if x.dim() == 4 else x[None]).to(device=device, dtype=dtype)
    if x.shape[0] != 1:
        raise ValueError(f"entropy_map takes one image, got a batch of {x.shape[0]}")
    size = tuple(x.shape[-2:])
    generator = torch.Generator().manual_seed(s.seed)
    draw = lambda: torch.randn((s.draws, *x.shape[1:]), generator=generator).to(device, dtype)  # noqa: E731
    error = _FeatureError(backend, x, layer)
    feature_scale = float(error.errors(s.sigma_init * draw()).mean())
    notes = []
    if not feature_scale > 0:
        notes.append(f"feature error at σ = {s.sigma_init} is zero: layer {layer!r} ignores the input noise")
        feature_scale = 1.0
    sigma = torch.full((s.grid, s.grid), s.sigma_init, dtype=dtype, device=device)
    lam = s.lam
    sigmas, means, losses, lams = [], [], [], []
    for step in range(s.steps):
        if progress is not None:
            progress.check()
        if on_step is not None:
            on_step(step, s.steps)
        mean_h = float(cell_entropy(sigma).mean())
        if step == s.lam_step and mean_h < s.target:
            lam *= s.lam_factor
        leaf = sigma.clone().requires_grad_(True)
        with torch.enable_grad():
            noise = upsample_cells(leaf, size) * draw()
        error_value, noise_gradient = error.mean_and_gradient(noise.detach(), feature_scale)
        (sigma_gradient,) = torch.autograd.grad(noise, leaf, noise_gradient)
        sigma_gradient = sigma_gradient - lam / sigma.numel() / sigma
        losses.append(error_value - lam * mean_h)
        sigma = (sigma - s.lr * sigma_gradient).clamp(s.sigma_min, s.sigma_max)
        sigmas.append(sigma)
        means.append(float(cell_entropy(sigma).mean()))
        lams.append(lam)
    means_array = np.asarray(means)
    kept = int(np.argmin(np.abs(means_array - s.target)))
    best = sigmas[kept]
    return EntropyMap(entropy=cell_entropy(best).cpu().numpy().astype(np.float64), sigma=best.cpu().numpy(),
                      step=kept + 1, mean_entropy=means_array, loss=np.asarray(losses), lam=np.asarray(lams),
                      feature_scale=feature_scale, layer=layer, notes=tuple(notes))
