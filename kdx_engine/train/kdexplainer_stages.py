"""KDExplainer's two stages (METHODS §8): soft routing with t = t0/epoch, then hard argmax routing.

The same schedule serves every arm (KD, no-KD, label smoothing), so their routings are comparable.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kdx_engine.hme import KDExplainerNet
from kdx_engine.jobs import Progress

from .loop import Log, Recipe, TrainingRun, TrainSettings, train
from .tensors import TrainingData

INITIAL_TEMPERATURE = 10.0


@dataclass(frozen=True)
class KDExplainerSchedule:
    """Epochs of the soft stage and of the hard stage; t0 of the annealed routing temperature."""

    soft_epochs: int
    hard_epochs: int
    initial_temperature: float = INITIAL_TEMPERATURE


def train_kdexplainer(model: KDExplainerNet, data: TrainingData, recipe: Recipe,
                      schedule: KDExplainerSchedule, settings: TrainSettings, *, name: str = "kdexplainer",
                      log: Log | None = print, progress: Progress | None = None) -> tuple[TrainingRun, TrainingRun]:
    """Stage 1 (soft, routing learnt, t annealed) then stage 2 (hard tree fixed, experts retrained)."""

    def anneal(epoch: int) -> None:
        model.temperature.fill_(schedule.initial_temperature / epoch)

    share = schedule.soft_epochs / (schedule.soft_epochs + schedule.hard_epochs)
    soft = train(model, data, recipe, dataclasses.replace(settings, epochs=schedule.soft_epochs),
                 name=f"{name} (soft routing)", log=log, progress=_part(progress, 0.0, share),
                 before_epoch=anneal)
    model.set_hard_routing()
    hard = train(model, data, recipe, dataclasses.replace(settings, epochs=schedule.hard_epochs,
                                                          seed=settings.seed + 1),
                 name=f"{name} (hard routing)", log=log, progress=_part(progress, share, 1.0 - share))
    return soft, hard


def _part(progress: Progress | None, start: float, span: float) -> Progress | None:
    """A Progress for one stage, reporting into ``progress`` over [start, start + span]."""
    if progress is None:
        return None
    return Progress(lambda fraction, message: progress.update(start + span * fraction, message))
