"""Trajectory metrics over the checkpoints of one training run (METHODS §6, Cheng et al.).

``Dist(m) = Σ_{k≤m} ‖w_k − w_{k−1}‖ / ‖w_0‖`` over the saved checkpoints in epoch order, with w one
named layer's weights: every weight of rank ≥ 2 (convolution and linear kernels) of the module of that
name, flattened together, or one parameter given by its full name. The path runs through every
checkpoint file found, even when only some of them are analysed. ``m̂_x = argmax_k N_fg(x; w_k)`` over
the analysed checkpoints (ties: the earliest, **our choice**), ``D_mean = mean_x Dist(m̂_x)``,
``D_var = var_x Dist(m̂_x)`` (population variance, **our choice**; the paper calls it D_std) and
``ρ = mean_x |S_last(x)| / |∪_k S_k(x)|`` with S the foreground concept cells (images whose union is
empty are left out, **our choice**). Each checkpoint's H̄ comes from its own maps. Intervals: delete-one
jackknife over the images, everything (H̄ included) recomputed per replicate.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from kdx_engine.checkpoints import ModelLoadError, checkpoint_state_dict
from kdx_engine.concepts.concept_counts import THRESHOLD, count_concepts, explained
from kdx_engine.messages import reader_problem
from kdx_engine.stats.jackknife import jackknife_interval
from kdx_engine.values import Value

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
_NUMBER = re.compile(r"(\d+)")
RHO_UNDEFINED = "undefined: no image has a foreground concept cell at any analysed checkpoint"


def checkpoint_series(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """The checkpoint files of one run in ``folder``, as (epoch, path) in epoch order; the epoch is the
    last number in the file name (``epoch_04.pth`` → 4)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: checkpoint folder not found")
    found = []
    for path in folder.iterdir():
        if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
            numbers = _NUMBER.findall(path.stem)
            if not numbers:
                raise ValueError(f"{path.name}: no epoch number in the checkpoint's name (e.g. epoch_04.pth)")
            found.append((int(numbers[-1]), path))
    epochs = [epoch for epoch, _ in found]
    if len(set(epochs)) != len(epochs):
        raise ValueError(f"{folder}: two checkpoints carry the same epoch number")
    if len(found) < 2:
        raise ValueError(f"{folder}: {len(found)} checkpoint file(s); a trajectory needs at least 2")
    return sorted(found)


def layer_weights(state_dict: Mapping[str, torch.Tensor], layer: str) -> torch.Tensor:
    """One named layer's weights as one vector: the parameter ``layer`` itself, or every rank ≥ 2 weight
    under the module ``layer``."""
    if layer in state_dict:
        return state_dict[layer].detach().double().flatten()
    prefix = f"{layer}."
    kernels = [value for name, value in state_dict.items()
               if name.startswith(prefix) and name.endswith("weight") and value.dim() >= 2]
    if not kernels:
        raise ValueError(f"the checkpoints hold no weights of layer {layer!r} (no parameter of that name, "
                         f"no convolution or linear weight under a module of that name)")
    return torch.cat([value.detach().double().flatten() for value in kernels])


def _state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """A checkpoint's weights, read as model files are (never running code from it); any file that is
    not one is a ModelLoadError naming it."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name}: checkpoint file is empty")
    try:
        return checkpoint_state_dict(path)
    except ModelLoadError:
        raise
    except Exception as exc:  # what torch's readers raise on bytes that are not a checkpoint: many types
        raise ModelLoadError(f"{path.name}: not a readable checkpoint ({reader_problem(exc)})") from exc


def weight_distances(paths: Sequence[Path], layer: str) -> np.ndarray:
    """Dist(m) for every checkpoint in ``paths`` (epoch order): 0 for the first."""
    weights = [layer_weights(_state_dict(path), layer) for path in paths]
    shapes = {tuple(w.shape) for w in weights}
    if len(shapes) != 1:
        raise ValueError(f"layer {layer!r} has different shapes across the checkpoints: not one training run")
    origin = float(weights[0].norm())
    if origin == 0:
        raise ValueError(f"layer {layer!r} is all zeros in the first checkpoint; Dist divides by its norm")
    steps = [0.0] + [float((b - a).norm()) / origin for a, b in zip(weights, weights[1:])]
    return np.cumsum(steps)


@dataclass(frozen=True, eq=False)
class TrajectoryResult:
    """Per-image m̂ (as an index into the analysed checkpoints) and ρ, and the three metrics."""

    epochs: tuple[int, ...]
    dist: np.ndarray
    best: np.ndarray
    rho_per_image: np.ndarray
    metrics: dict[str, Value]


def _per_image(entropies: np.ndarray, foreground: np.ndarray, threshold: float):
    """m̂ index and ρ per image from the analysed checkpoints' maps (K×n×G×G)."""
    counts = [count_concepts(maps, foreground, threshold) for maps in entropies]
    n_fg = np.stack([c.n_fg for c in counts])
    sets = np.stack([c.concepts & foreground for c in counts])
    union = sets.any(axis=0).reshape(sets.shape[1], -1).sum(1)
    last = sets[-1].reshape(sets.shape[1], -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(union > 0, last / np.maximum(union, 1), np.nan)
    return np.argmax(n_fg, axis=0), rho


def trajectory_metrics(entropies: np.ndarray, foreground: np.ndarray, dist: np.ndarray,
                       epochs: Sequence[int], threshold: float = THRESHOLD) -> TrajectoryResult:
    """D_mean, D_var and ρ with jackknife intervals. ``entropies``: K×n×G×G maps of the analysed
    checkpoints (epoch order, the last one last); ``dist``: Dist at those K checkpoints."""
    entropies = np.asarray(entropies, dtype=np.float64)
    foreground = np.asarray(foreground, dtype=bool)
    dist = np.asarray(dist, dtype=np.float64)
    if len(dist) != len(entropies) or len(entropies) < 2:
        raise ValueError("a trajectory needs the maps of at least 2 checkpoints, one Dist per checkpoint")
    best, rho = _per_image(entropies, foreground, threshold)
    n = entropies.shape[1]
    metrics = {}
    for position, name, bounds in ((0, "D_mean", (0, np.inf)), (1, "D_var", (0, np.inf)), (2, "rho", (0, 1))):
        metrics[name] = explained(jackknife_interval(
            lambda idx, p=position: _stats(entropies, dist, foreground, threshold, idx)[p], n,
            bounds=bounds).as_value(), RHO_UNDEFINED if name == "rho" else None)
    return TrajectoryResult(tuple(epochs), dist, best, rho, metrics)


def trajectory_differences(a: tuple, b: tuple, foreground: np.ndarray, threshold: float = THRESHOLD
                           ) -> dict[str, Value]:
    """Model a − model b for D_mean, D_var, ρ on the same images; ``a``, ``b``: (entropies, dist)."""
    foreground = np.asarray(foreground, dtype=bool)
    maps_a, maps_b = np.asarray(a[0], dtype=np.float64), np.asarray(b[0], dtype=np.float64)
    dist_a, dist_b = np.asarray(a[1], dtype=np.float64), np.asarray(b[1], dtype=np.float64)
    result = {}
    for position, name in enumerate(("D_mean", "D_var", "rho")):
        def difference(idx, p=position):
            return (_stats(maps_a, dist_a, foreground, threshold, idx)[p]
                    - _stats(maps_b, dist_b, foreground, threshold, idx)[p])
        result[name] = explained(jackknife_interval(difference, maps_a.shape[1]).as_value(),
                                 RHO_UNDEFINED if name == "rho" else None)
    return result


def _stats(maps: np.ndarray, dist: np.ndarray, foreground: np.ndarray, threshold: float, indices
           ) -> tuple[float, float, float]:
    """(D_mean, D_var, ρ) on the images ``indices``."""
    best, rho = _per_image(maps[:, indices], foreground[indices], threshold)
    d = dist[best]
    return float(d.mean()), float(d.var()), float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")
