"""Dataset metrics (METHODS.md §2–§3): FSS and CKA between models' stages, RS per stage and partial RS,
each with a delete-one jackknife interval (METHODS §1). Features are pooled over all images and
streamed in batches: only n×n matrices are kept per (model, stage). CKA is the debiased linear CKA
by default (``cka_estimator`` names it; the plain one is ``cka="biased"``). Every number is a
:class:`kdx_engine.values.Value`."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..atomic_files import atomic_write_text
from ..data.datasets import ImageFolderDataset
from ..data.duplicates import DuplicateFinder
from ..data.image_stream import image_batches
from ..data.images import to_batch
from ..jobs import Progress, report
from ..models.backend import ModelBackend
from ..models.layers import probe_layers, stage_layers
from ..provenance import package_versions
from ..stats.jackknife import (
    BIAS_CORRECTED_METHOD, LEVEL, U_STATISTIC_METHOD, jackknife_debiased_linear_cka, jackknife_linear_cka,
    jackknife_partial_r2, jackknife_r2_star, jackknife_semi_partial_r2,
)
from ..stats.distance_correlation import distance_matrix, distance_matrix_from_gram, label_embedding, u_centre
from ..stats.gram import GramAccumulator
from ..values import Value

MIN_IMAGES = 32
ESTIMATOR = "bias-corrected R²* (U-centred, Székely–Rizzo), METHODS §1"


@dataclass(frozen=True)
class CkaEstimator:
    """One way of estimating linear CKA for ``cka_matrix``: its jackknife, export name and interval."""

    label: str
    interval: Callable  # jackknife function of two n×n Gram matrices, returning an Interval
    method: str
    range: str


# Debiased CKA is the default (our choice, measured): the plain estimator is biased upwards by O(1/n)
# (mean 0.50 for a population 0.43 at n = 64, d = 10) and its jackknife interval covered 0.90 of the
# time there even re-centred; debiased CKA's covered 0.94–0.98 (benchmarks/interval_coverage.py).
CKA_ESTIMATORS = {
    "debiased": CkaEstimator("debiased linear CKA (U-centred HSIC, Song et al. 2012; our choice, measured)",
                             jackknife_debiased_linear_cka, U_STATISTIC_METHOD, "[-1, 1]"),
    "biased": CkaEstimator("linear CKA (plug-in, double-centred HSIC, Kornblith et al. 2019; its interval "
                           "under-covers: 0.90 at n = 64, d = 10)",
                           jackknife_linear_cka, BIAS_CORRECTED_METHOD, "[0, 1]"),
}
DEFAULT_CKA = "debiased"


def _cka_estimator(name: str) -> CkaEstimator:
    if name not in CKA_ESTIMATORS:
        raise ValueError(f"unknown CKA estimator {name!r}; choose one of {sorted(CKA_ESTIMATORS)}")
    return CKA_ESTIMATORS[name]


def interval_record(level: float = LEVEL, cka: str = DEFAULT_CKA) -> dict:
    """How every interval of the result was computed (exported as ``interval``)."""
    estimator = _cka_estimator(cka)
    return {
        "method": U_STATISTIC_METHOD,
        "cka_method": estimator.method,
        "level": level,
        "replicates": "n: one leave-one-out value per image (row and column dropped, re-centred)",
        "range": f"clipped to [-1, 1] for R²* and its partial forms, {estimator.range} for CKA",
        "randomness": "none (the seed is recorded only)",
        "coverage": "benchmarks/interval_coverage.py",
    }


@dataclass(frozen=True)
class StagePair:
    """A statistic between stage ``layer_a`` of model ``a`` and stage ``layer_b`` of model ``b``."""

    a: str
    layer_a: str
    b: str
    layer_b: str
    result: Value


@dataclass(frozen=True)
class StageMatrix:
    """Stage×stage values between two models (rows: model a's stages)."""

    a: str
    b: str
    rows: list[str]
    columns: list[str]
    values: list[list[Value]]


@dataclass(frozen=True)
class Relevance:
    """RS of a model's stage, or partial RS with another model's geometry removed (``removed``)."""

    model: str
    layer: str
    result: Value
    removed: str | None = None
    removed_layer: str | None = None
    form: str = "plain"


@dataclass(frozen=True)
class DatasetMetrics:
    """Every dataset metric with its interval, n, estimator and layer names; saves itself as JSON.

    ``interval`` names the interval method; ``seed`` is recorded (the jackknife is exact).
    """

    n: int
    n_labelled: int
    stages: dict[str, list[str]]
    fss: list[StagePair]
    fss_matrix: list[StageMatrix]
    cka_matrix: list[StageMatrix]
    rs: list[Relevance]
    partial_rs: list[Relevance]
    models: dict[str, dict]
    skipped: list[str]
    seed: int
    level: float = LEVEL
    duplicates: list[str] = field(default_factory=list)  # "copy = original (same file|same pixels)", left out
    estimator: str = ESTIMATOR
    cka_estimator: str = CKA_ESTIMATORS[DEFAULT_CKA].label
    label_embedding: str = "one-hot"
    notes: list[str] = field(default_factory=list)
    interval: dict = field(default_factory=interval_record)

    def to_json(self) -> dict:
        """The result as JSON-ready data; undefined values are None, their reasons beside them."""
        data = asdict(self)
        data["versions"] = package_versions()
        return _without_nan(data)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: exists (use --overwrite)")
        text = json.dumps(self.to_json(), indent=2, default=str, allow_nan=False)
        atomic_write_text(path, text + "\n")
        return path


def _without_nan(data):
    """``data`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(data, dict):
        return {key: _without_nan(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_without_nan(value) for value in data]
    if isinstance(data, (float, np.floating)):
        return float(data) if math.isfinite(data) else None
    return data


def dataset_metrics(
    teacher: ModelBackend,
    student: ModelBackend,
    dataset: ImageFolderDataset,
    base: ModelBackend | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 32,
    progress: Progress | None = None,
    stages: dict[str, list[str]] | None = None,
    cka: str = DEFAULT_CKA,
) -> DatasetMetrics:
    """FSS (T–S, and S–B, T–B with a Base), stage×stage FSS and CKA, RS and partial RS, pooled over
    every readable image of ``dataset`` (n ≥ 32), each with a delete-one jackknife interval.

    ``cka`` names the CKA estimator of ``cka_matrix``: "debiased" (default) or "biased" (plain linear
    CKA); see ``CKA_ESTIMATORS``.
    """
    cka_estimator = _cka_estimator(cka)
    models = {"teacher": teacher, "student": student, **({"base": base} if base is not None else {})}
    stages = {role: (stages or {}).get(role) or stage_layers(probe_layers(m)) for role, m in models.items()}
    grams, labels, skipped, duplicates = _stream_grams(models, stages, dataset, batch_size, progress, FEATURE_RAM_BYTES)
    n = len(labels)
    if n < MIN_IMAGES:
        raise ValueError(f"{dataset.root}: {n} readable images; dataset metrics need n ≥ {MIN_IMAGES} "
                         "(≥ 100 recommended)")
    distances = {key: distance_matrix_from_gram(g) for key, g in grams.items()}
    steps = _Steps(progress, start=0.6)
    pairs = [("teacher", "student")] + ([("student", "base"), ("teacher", "base")] if base is not None else [])
    fss, fss_matrix, cka_matrix = [], [], []
    for a, b in pairs:
        fss_matrix.append(_matrix(a, b, stages, distances, jackknife_r2_star, steps))
        cka_matrix.append(_matrix(a, b, stages, grams, cka_estimator.interval, steps))
        fss += _matched(fss_matrix[-1])
    rs, partial_rs, n_labelled, notes = _relevance(models, stages, distances, labels, embeddings, steps)
    label_note = getattr(dataset, "label_note", None)
    if label_note and n_labelled:
        notes.insert(0, label_note)
    if n_labelled < n:
        notes.append(f"{n - n_labelled} image(s) without a true label left out of RS")
    if duplicates:
        shown = ", ".join(map(str, duplicates[:5])) + (", …" if len(duplicates) > 5 else "")
        notes.insert(0, f"{len(duplicates)} duplicate image(s) left out (the statistics assume distinct images; "
                        f"a copy counts one image twice and narrows every interval): {shown}")
    report(progress, 1.0, "done")
    return DatasetMetrics(
        n=n, n_labelled=n_labelled, stages=stages, fss=fss, fss_matrix=fss_matrix, cka_matrix=cka_matrix,
        rs=rs, partial_rs=partial_rs, skipped=skipped, seed=seed, duplicates=[str(d) for d in duplicates],
        models={role: m.info.record() for role, m in models.items()},
        label_embedding="one-hot" if embeddings is None else f"class embeddings {tuple(np.shape(embeddings))}",
        notes=notes, cka_estimator=cka_estimator.label, interval=interval_record(cka=cka),
    )


class _Steps:
    """Progress over the statistics phase, which follows feature extraction."""

    def __init__(self, progress, start):
        self.progress, self.start, self.done = progress, start, 0

    def tick(self, message: str) -> None:
        self.done += 1
        report(self.progress, self.start + (1 - self.start) * (1 - 1 / (1 + 0.05 * self.done)), message)


FEATURE_RAM_BYTES = 512 * 1024**2  # features of all (model, stage) pairs held in RAM; beyond it they go to disk


def _stream_grams(models, stages, dataset, batch_size, progress, ram_bytes: int = FEATURE_RAM_BYTES):
    """n×n Gram matrices per (model, stage), from features streamed batch by batch (the image stream the
    dataset scan uses). The feature rows wait for ``gram()`` in RAM while all of them together fit in
    ``ram_bytes``, else in memmaps on disk, so memory does not grow with n·d, only with n²."""
    total = len(dataset)
    keys = [(role, layer) for role, layers in stages.items() for layer in layers]
    share = max(1, ram_bytes // max(len(keys), 1))
    accumulators = {key: GramAccumulator(total, memmap_threshold_bytes=share) for key in keys}
    labels: list[int | None] = []
    skipped: list[str] = []
    duplicates = DuplicateFinder()
    for items in image_batches(dataset.paths, dataset.labels, batch_size):
        skipped += [str(item.error) for item in items if item.error is not None]
        items = [item for item in items if item.image is not None and not duplicates.seen(item.image)]
        images = [item.image for item in items]
        if not images:
            continue
        for role, model in models.items():
            x = to_batch(images, model.info.preprocessing)
            activations = model.forward(x, stages[role]).activations
            for layer in stages[role]:
                accumulators[(role, layer)].update(activations[layer])
        labels += [item.label for item in items]
        report(progress, 0.6 * len(labels) / max(total, 1), f"features of {len(labels)}/{total} images")
    grams = {}
    for key, accumulator in accumulators.items():
        if not accumulator.rows_received:
            accumulator.close()
            continue
        accumulator.end_early()  # unreadable images were skipped
        grams[key] = accumulator.gram()
        accumulator.close()
    return grams, labels, skipped, duplicates.found


def _named_cause(value: Value, parts) -> Value:
    """``value`` with an undefined reason that names the constant input (``parts``: (what, matrix) pairs,
    distance or Gram matrices) when a variance term is zero."""
    if value.reason is None or not value.reason.startswith("undefined: a variance term"):
        return value
    constant = [what for what, matrix in parts if not bool(u_centre(matrix.detach()).any())]
    if not constant:
        return value
    verb = "are" if constant[0].endswith("features") else "is"
    return replace(value, reason=f"undefined: {constant[0]} {verb} the same for every image (zero variance)")


def _features(role: str, layer: str) -> str:
    return f"the {role}'s {layer} features"


def _matrix(a, b, stages, matrices, interval, steps) -> StageMatrix:
    values = []
    for layer_a in stages[a]:
        row = []
        for layer_b in stages[b]:
            x, y = matrices[(a, layer_a)], matrices[(b, layer_b)]
            row.append(_named_cause(interval(x, y).as_value(),
                                    [(_features(a, layer_a), x), (_features(b, layer_b), y)]))
            steps.tick(f"{a} {layer_a} vs {b} {layer_b}")
        values.append(row)
    return StageMatrix(a, b, list(stages[a]), list(stages[b]), values)


def matched_stages(rows: list[str], columns: list[str]) -> list[tuple[int, int]]:
    """Stage pairs by depth order: each stage of the shorter list with the stage at the same relative
    depth in the longer one (first with first, last with last)."""
    short, long_ = (rows, columns) if len(rows) <= len(columns) else (columns, rows)
    if len(short) == 1:
        picks = [(0, len(long_) - 1)]
    else:
        picks = [(i, round(i * (len(long_) - 1) / (len(short) - 1))) for i in range(len(short))]
    return picks if short is rows else [(j, i) for i, j in picks]


def _matched(matrix: StageMatrix) -> list[StagePair]:
    return [StagePair(matrix.a, matrix.rows[i], matrix.b, matrix.columns[j], matrix.values[i][j])
            for i, j in matched_stages(matrix.rows, matrix.columns)]


def _relevance(models, stages, distances, labels, embeddings, steps):
    known = [i for i, label in enumerate(labels) if label is not None]
    notes: list[str] = []
    if len(known) < 4 or len({labels[i] for i in known}) < 2:
        notes.append("RS not computed: it needs at least 4 labelled images of two or more classes")
        return [], [], len(known), notes
    index = torch.as_tensor(known)
    g = distance_matrix(label_embedding([labels[i] for i in known], class_embeddings=embeddings))

    def restricted(key):
        return distances[key][index[:, None], index]

    rs = []
    for role, layers in stages.items():
        for layer in layers:
            x = restricted((role, layer))
            rs.append(Relevance(role, layer, _named_cause(jackknife_r2_star(x, g).as_value(),
                                                          [(_features(role, layer), x), ("the label", g)])))
            steps.tick(f"RS {role} {layer}")
    other = "base" if "base" in models else "teacher"
    partial = []
    for x_role, y_role in (("student", other), (other, "student")):
        for i, j in matched_stages(stages[x_role], stages[y_role]):
            x_layer, y_layer = stages[x_role][i], stages[y_role][j]
            a, b = restricted((x_role, x_layer)), restricted((y_role, y_layer))
            for form, interval in (("semi-partial", jackknife_semi_partial_r2), ("partial", jackknife_partial_r2)):
                value = _named_cause(interval(a, g, b).as_value(), [(_features(x_role, x_layer), a), ("the label", g),
                                                                     (_features(y_role, y_layer), b)])
                partial.append(Relevance(x_role, x_layer, value, y_role, y_layer, form))
                steps.tick(f"RS({x_role}|{y_role}) {x_layer}")
    return rs, partial, len(known), notes
