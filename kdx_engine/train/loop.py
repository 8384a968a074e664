"""A small deterministic training loop: seeded batch order, AdamW with cosine decay, checkpoints.

Given the same seed, data, initial weights and thread count, a run is repeated bit for bit on the
same machine (CPU kernels, ``torch.use_deterministic_algorithms`` inside ``deterministic``).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from kdx_engine.jobs import Progress, report

from .tensors import Batch, TrainingData

Recipe = Callable[[nn.Module, Batch], torch.Tensor]
Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one run; ``checkpoint_epochs`` are the epochs whose weights are kept
    (0: the initial weights, which trajectory metrics measure distances from).

    Parameters whose names contain one of ``logit_parameters`` (VAM θ, KDExplainer routing θ) learn
    at ``logit_learning_rate_scale`` × the learning rate and without weight decay (our choice: the
    demo's runs are short, and decay would pull every attention back to uniform)."""

    epochs: int
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    checkpoint_epochs: tuple[int, ...] = ()
    logit_parameters: tuple[str, ...] = ("vam_theta", "routing.")
    logit_learning_rate_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")


@dataclass
class TrainingRun:
    """What a run leaves: the mean loss per epoch, kept checkpoints (epoch → state_dict), seconds."""

    losses: list[float] = field(default_factory=list)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels for the duration; previous settings restored."""
    saved_threads = torch.get_num_threads()
    saved_mode = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_mode)


def train(model: nn.Module, data: TrainingData, recipe: Recipe, settings: TrainSettings, *,
          name: str = "model", log: Log | None = print, progress: Progress | None = None,
          before_epoch: Callable[[int], None] | None = None) -> TrainingRun:
    """Train ``model`` in place on ``data`` with loss ``recipe(model, batch)``.

    ``before_epoch(epoch)`` (1-based) runs before each epoch, e.g. to anneal a temperature. Only
    parameters that require grad are optimised.
    """
    optimiser = torch.optim.AdamW(_parameter_groups(model, settings), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(data) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    order = torch.Generator().manual_seed(settings.seed)
    run, start = TrainingRun(), time.perf_counter()
    if 0 in settings.checkpoint_epochs:
        run.checkpoints[0] = copy.deepcopy(model.state_dict())
    for epoch in range(1, settings.epochs + 1):
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        permutation = torch.randperm(len(data), generator=order)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = data.batch(permutation[step * settings.batch_size:(step + 1) * settings.batch_size])
            loss = recipe(model, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
            report(progress, ((epoch - 1) * steps_per_epoch + step + 1) / total_steps,
                   f"{name}: epoch {epoch}/{settings.epochs}")
        run.losses.append(total / steps_per_epoch)
        if epoch in settings.checkpoint_epochs:
            run.checkpoints[epoch] = copy.deepcopy(model.state_dict())
        if log is not None:
            log(f"{name}: epoch {epoch}/{settings.epochs} loss {run.losses[-1]:.4f} "
                f"({time.perf_counter() - start:.0f} s)")
    model.eval()
    run.seconds = time.perf_counter() - start
    return run


def _parameter_groups(model: nn.Module, settings: TrainSettings) -> list[dict]:
    weights, logits = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            is_logit = any(key in name for key in settings.logit_parameters)
            (logits if is_logit else weights).append(parameter)
    groups = [{"params": weights}]
    if logits:
        groups.append({"params": logits, "weight_decay": 0.0,
                       "lr": settings.learning_rate * settings.logit_learning_rate_scale})
    return groups


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Logits of ``model`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(inputs[i:i + batch_size]) for i in range(0, inputs.shape[0], batch_size)])


def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose argmax logit is the label."""
    return float((predict_logits(model, inputs).argmax(dim=1) == labels).float().mean())
