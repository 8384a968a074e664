"""The dataset plot strip under a figure panel (``kdx export --plots``, File ▸ Export figure…): mean
KL(T‖S) and KL(T‖B) against τ over an ImageFolder, and each model's 2-D feature projection."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..dark_knowledge import DEFAULT_TAU
from ..data import ImageFolderDataset
from ..figures.distillation_plots import DistillationPlots
from ..jobs import Progress
from ..labels import labelling_class_names
from ..models.backend import ModelBackend
from .features import dataset_outputs
from .projection import aligned_to, project
from .summary import outputs_dark_knowledge


def preset_tau(student: ModelBackend) -> tuple[float, str]:
    """The Student's sidecar τ when it records one, else 4; and where it came from."""
    tau = student.info.preprocessing.distillation_temperature
    return (float(tau), "the Student's sidecar") if tau else (DEFAULT_TAU, "the default")


def dataset_plots(backends: Mapping[str, ModelBackend], folder, kinds: Sequence[str], projection: str = "pca",
                  seed: int = 0, progress: Progress | None = None) -> tuple[DistillationPlots, dict]:
    """The strip of ``kinds`` (``kl``, ``embeddings``) over the images of ``folder`` at the Student's preset
    τ, and its record for the export's manifest (dataset, n, τ and its origin, the dark knowledge, the
    images skipped as unreadable)."""
    class_names = labelling_class_names(b.info.preprocessing.class_names for b in backends.values())
    outputs = dataset_outputs(backends, ImageFolderDataset(folder, class_names=class_names), progress=progress)
    tau, origin = preset_tau(backends["student"])
    dark = outputs_dark_knowledge(outputs, tau)
    curves = {role: tuple(np.array([getter(p) for p in points])
                          for getter in (lambda p: p.tau, lambda p: p.kl.value, lambda p: p.kl.low, lambda p: p.kl.high))
              for role, points in dark.curves.items()}
    projections, reference = {}, None
    if "embeddings" in kinds:
        for role in ("teacher", "student", "base"):
            if role in outputs.features:
                projected = project(outputs.features[role], projection, seed=seed)
                projected = projected if reference is None else aligned_to(projected, reference)
                if reference is None:
                    reference = projected
                projections[role] = projected.coordinates
    kl_text = ", ".join(f"KL(T‖{r[0].upper()}) = {dark.kl_at(r, tau).value:.3f}" for r in dark.curves)
    caption = f"{Path(folder).name}: n = {outputs.n}; at τ = {tau:g} ({origin}): {kl_text}"
    plots = DistillationPlots(tuple(kinds), curves if "kl" in kinds else {}, projections, outputs.labels_array(),
                              tuple(class_names), caption)
    record = {"dataset": str(folder), "n": outputs.n, "projection": projection if projections else None,
              "tau": tau, "tau_from": origin, "dark_knowledge": dark.to_json(), "skipped": list(outputs.skipped)}
    return plots, record
