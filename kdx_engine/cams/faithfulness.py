"""Deletion and insertion AUC of saliency maps (Petsiuk et al., RISE, BMVC 2018), batched.

Pixels are ranked by map value (descending, stable: ties go to the lower row-major index). Step i of
``steps`` perturbs the top k_i = round(i·H·W/steps) pixels (halves round up), in every channel:
deletion replaces them with the baseline, insertion starts from the baseline and reveals them. The
score is the softmax probability of the target class; the AUC is the trapezoid rule over the
perturbed fraction k_i/(H·W) in [0, 1]. All perturbed images go through ``scores_fn`` in chunks of
``batch_size``, one stream per curve kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

BASELINES = ("blur", "zero", "mean")


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion/insertion curves (N×(steps+1)) and AUCs (N) on the CPU in float64.

    An image whose map is constant or non-finite has NaN curves and AUCs, and ``reasons[n]`` says why;
    otherwise ``reasons[n]`` is None.
    """

    deletion_auc: torch.Tensor
    insertion_auc: torch.Tensor
    deletion_curve: torch.Tensor
    insertion_curve: torch.Tensor
    fractions: torch.Tensor
    targets: tuple[int, ...]
    reasons: tuple[str | None, ...]
    baseline: str
    sigma: float | None
    steps: int


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of N×C×H×W images (radius ceil(3σ), edges replicated)."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def baseline_images(images: torch.Tensor, baseline: str, sigma: float | None = None) -> torch.Tensor:
    """The image each pixel is replaced with: blurred, all zero, or each image's per-channel mean."""
    if baseline == "blur":
        return gaussian_blur(images, sigma if sigma is not None else images.shape[-2] / 20.0)
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(-2, -1), keepdim=True).expand_as(images).clone()
    raise ValueError(f"unknown baseline {baseline!r}; expected one of {BASELINES}")


def step_counts(n_pixels: int, steps: int) -> torch.Tensor:
    """k_i = round(i·n_pixels/steps) for i = 0..steps, halves rounded up, in exact integer arithmetic."""
    i = torch.arange(steps + 1)
    return (2 * i * n_pixels + steps) // (2 * steps)


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Per image, each pixel's position (0 = most salient) in the stable descending order of its map."""
    flat = maps.flatten(1).nan_to_num(nan=-math.inf)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks.view_as(maps)


def _map_reason(saliency: torch.Tensor) -> str | None:
    if not torch.isfinite(saliency).all():
        return "map has non-finite values"
    if saliency.max() == saliency.min():
        return "map is constant: its pixel order is set by ties alone"
    return None


def _score_curve(images, baselines, ranks, counts, targets, scores_fn, batch_size, insert) -> torch.Tensor:
    """Target probabilities of every perturbed image, N×(steps+1), computed in chunks of batch_size."""
    n_images, n_points = images.shape[0], counts.numel()
    scores = torch.empty(n_images * n_points, dtype=torch.float64)
    for start in range(0, n_images * n_points, batch_size):
        flat = torch.arange(start, min(start + batch_size, n_images * n_points), device=images.device)
        image_idx, point_idx = flat // n_points, flat % n_points
        chosen = (ranks[image_idx] < counts[point_idx].view(-1, 1, 1)).unsqueeze(1)
        if insert:
            batch = torch.where(chosen, images[image_idx], baselines[image_idx])
        else:
            batch = torch.where(chosen, baselines[image_idx], images[image_idx])
        probs = torch.softmax(scores_fn(batch).double(), dim=1)
        scores[start : start + flat.numel()] = probs.gather(1, targets[image_idx].view(-1, 1)).squeeze(1).cpu()
    return scores.view(n_images, n_points)


@torch.no_grad()
def deletion_insertion(
    images: torch.Tensor,
    maps: torch.Tensor,
    scores_fn: Callable[[torch.Tensor], torch.Tensor],
    targets: Sequence[int] | torch.Tensor,
    steps: int = 20,
    baseline: str = "blur",
    batch_size: int = 64,
    sigma: float | None = None,
) -> FaithfulnessResult:
    """Deletion and insertion curves and AUCs for N preprocessed images (N×C×H×W) and maps (N×H×W).

    ``scores_fn`` maps a batch of images to N×K logits (put a model in eval mode first); ``targets``
    holds one class index per image. ``sigma`` is the blur baseline's Gaussian σ in pixels
    (default H/20); it is ignored by the other baselines.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    n_images, _, height, width = images.shape
    maps = torch.as_tensor(maps, device=images.device)
    if tuple(maps.shape) != (n_images, height, width):
        raise ValueError(f"maps must be N×H×W = {(n_images, height, width)}, got {tuple(maps.shape)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    targets = torch.as_tensor(targets, dtype=torch.long, device=images.device).view(-1)
    if targets.numel() != n_images:
        raise ValueError(f"need one target per image: {n_images} images, {targets.numel()} targets")
    if baseline == "blur" and sigma is None:
        sigma = height / 20.0
    baselines = baseline_images(images, baseline, sigma)
    ranks = pixel_ranks(maps)
    counts = step_counts(height * width, steps).to(images.device)
    fractions = counts.double().cpu() / (height * width)
    curves = {
        kind: _score_curve(images, baselines, ranks, counts, targets, scores_fn, batch_size, kind == "insertion")
        for kind in ("deletion", "insertion")
    }
    reasons = tuple(_map_reason(m) for m in maps)
    invalid = torch.tensor([r is not None for r in reasons], dtype=torch.bool)
    for curve in curves.values():
        curve[invalid] = math.nan
    return FaithfulnessResult(
        deletion_auc=torch.trapezoid(curves["deletion"], x=fractions, dim=1),
        insertion_auc=torch.trapezoid(curves["insertion"], x=fractions, dim=1),
        deletion_curve=curves["deletion"],
        insertion_curve=curves["insertion"],
        fractions=fractions,
        targets=tuple(int(t) for t in targets.cpu()),
        reasons=reasons,
        baseline=baseline,
        sigma=sigma if baseline == "blur" else None,
        steps=steps,
    )
