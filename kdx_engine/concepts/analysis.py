"""A concepts analysis: entropy maps of every image for every model (and checkpoint), then the counts,
the Student − Base differences and the trajectory metrics (METHODS §6).

Each (model or checkpoint, image) map is one independent work item; ``workers > 1`` runs them in that
many processes (one thread each), which reload the models from their files. A checkpoint whose file is
byte-identical (same SHA-256) to the analysed model reuses that model's maps.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from kdx_engine.concepts.approximate import METHOD as APPROXIMATE_METHOD
from kdx_engine.concepts.approximate import APPROXIMATE_THRESHOLD, ApproximateSettings, approximate_entropy_map
from kdx_engine.concepts.concept_counts import (
    NO_MASKS_NOTE, THRESHOLD, ConceptCounts, count_concepts, count_differences, count_statistics, stack_foreground,
)
from kdx_engine.concepts.entropy_map import METHOD as SAMPLED_METHOD
from kdx_engine.concepts.entropy_map import EntropySettings, entropy_map
from kdx_engine.concepts.trajectory import TrajectoryResult, trajectory_differences, trajectory_metrics, weight_distances
from kdx_engine.atomic_files import atomic_write_bytes
from kdx_engine.data.images import LoadedImage, load_image, to_tensor, transform_mask
from kdx_engine.jobs import Cancelled, Progress, report
from kdx_engine.memory import check_fits
from kdx_engine.models.backend import ModelBackend
from kdx_engine.models.loading import load_model, sha256_of
from kdx_engine.values import Value

Loader = Callable[..., ModelBackend]


NOISE_COPIES = 4  # per step: the noise batch, its cell mask, the draw and its gradient (float32)

@dataclass(frozen=True)
class ConceptSettings:
    """Which method (sampled, the published one, or the labelled approximation), its settings and b."""

    sampled: EntropySettings = EntropySettings()
    approximate: ApproximateSettings | None = None
    threshold: float | None = None

    @property
    def method(self) -> str:
        return "approximate" if self.approximate is not None else "sampled"

    @property
    def grid(self) -> int:
        return self.approximate.grid if self.approximate is not None else self.sampled.grid

    @property
    def concept_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return APPROXIMATE_THRESHOLD if self.approximate is not None else THRESHOLD

    def to_json(self) -> dict:
        chosen = self.approximate if self.approximate is not None else self.sampled
        return {"method": self.method,
                "description": APPROXIMATE_METHOD if self.approximate is not None else SAMPLED_METHOD,
                "settings": chosen.to_json(), "threshold_b": self.concept_threshold}


@dataclass(frozen=True)
class ModelSpec:
    """A model to analyse: its role, loaded backend, layer, and optionally the checkpoints of its run."""

    role: str
    backend: ModelBackend
    layer: str
    checkpoints: tuple[tuple[int, Path], ...] = ()
    analysed_epochs: tuple[int, ...] | None = None
    weights_layer: str | None = None


@dataclass(frozen=True, eq=False)
class ModelConcepts:
    """One model's (or checkpoint's) maps over the images, the kept steps, the counts and statistics."""

    role: str
    layer: str
    record: dict
    entropies: np.ndarray
    steps: np.ndarray
    mean_entropy: np.ndarray
    counts: ConceptCounts
    statistics: dict[str, Value]


@dataclass(frozen=True, eq=False)
class TrajectoryConcepts:
    """A model's checkpoint run: every file with its Dist, the analysed checkpoints' maps, the metrics."""

    role: str
    weights_layer: str
    files: tuple[dict, ...]
    dist_all: np.ndarray
    epochs: tuple[int, ...]
    entropies: np.ndarray
    result: TrajectoryResult


@dataclass(frozen=True, eq=False)
class ConceptsResult:
    """Everything a concepts analysis produced (see the module docstring)."""

    settings: ConceptSettings
    images: tuple[LoadedImage, ...]
    has_masks: bool
    foreground: dict[str, np.ndarray | None]
    models: dict[str, ModelConcepts]
    differences: dict[str, Value]
    trajectories: dict[str, TrajectoryConcepts]
    trajectory_differences: dict[str, Value]
    seconds_per_map: float
    notes: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        return len(self.images)


def model_record(backend: ModelBackend, layer: str) -> dict:
    """What an export records of a model (METHODS §9): ``ModelInfo.record`` and the layer."""
    return {**backend.info.record(), "layer": layer}


def one_map(backend: ModelBackend, image: LoadedImage, layer: str, settings: ConceptSettings,
            progress: Progress | None = None, on_step: Callable[[int, int], None] | None = None):
    """The entropy map of one image for one model with the chosen method."""
    x = to_tensor(image, backend.info.preprocessing)
    if settings.approximate is not None:
        return approximate_entropy_map(backend, x, layer, settings.approximate, progress)
    return entropy_map(backend, x, layer, settings.sampled, progress, on_step)


@dataclass(frozen=True)
class _Item:
    key: tuple
    model_path: str
    load_options: tuple
    layer: str
    image_path: str


_WORKER_MODELS: dict = {}


def _run_item(item: _Item, settings: ConceptSettings):
    """A worker process's item: load (and keep) the model, load the image, compute its map."""
    torch.set_num_threads(1)
    cache_key = (item.model_path, item.load_options)
    if cache_key not in _WORKER_MODELS:
        _WORKER_MODELS[cache_key] = load_model(item.model_path, **dict(item.load_options))
    result = one_map(_WORKER_MODELS[cache_key], load_image(item.image_path), item.layer, settings)
    return item.key, result.entropy, result.step, float(result.mean_entropy[max(result.step, 1) - 1])


def analyse_concepts(models: Sequence[ModelSpec], images: Sequence[LoadedImage],
                     settings: ConceptSettings = ConceptSettings(), progress: Progress | None = None,
                     workers: int = 1, load_options: Mapping | None = None,
                     compare: tuple[str, str] | None = ("student", "base"),
                     cache_folder: Path | None = None) -> ConceptsResult:
    """Maps, counts, differences (``compare[0] − compare[1]`` when both are analysed) and trajectories.

    ``load_options`` (``arch``, ``which``, ``trust_pickle``) are how worker processes and checkpoints
    are loaded. ``cache_folder``: maps already computed with the same model, image, layer and settings
    are read from there, and every new map is written there as soon as it is done (a resumable run)."""
    images = tuple(images)
    if not images:
        raise ValueError("no images to analyse")
    if not models:
        raise ValueError("no models to analyse")
    load_options = dict(load_options or {})
    grid = settings.grid
    for spec in models:  # checked before anything runs
        size = spec.backend.info.preprocessing.input_size
        if grid > size:
            raise ValueError(f"a {grid}×{grid} concept grid is finer than the {spec.role}'s {size}×{size} input: "
                             f"cells would cover no pixel; use a grid of at most {size}")
        if settings.approximate is None:
            draws = settings.sampled.draws
            check_fits(draws * 3 * size * size * 4 * NOISE_COPIES,
                       f"{draws:,} noise draws per step at {size}×{size} px ({spec.role})")
    foreground, notes = {}, []
    for spec in models:
        masks = [None if image.mask is None else transform_mask(image.mask, spec.backend.info.preprocessing)
                 for image in images]
        foreground[spec.role] = stack_foreground(masks, grid)
    has_masks = all(fg is not None for fg in foreground.values())
    if not has_masks:
        missing = sum(image.mask is None for image in images)
        notes.append(f"{NO_MASKS_NOTE}; {missing} of {len(images)} image(s) have no mask")

    # Dist first: a wrong weights layer is reported before any map is computed.
    distances = {spec.role: weight_distances([path for _, path in spec.checkpoints], spec.weights_layer or spec.layer)
                 for spec in models if spec.checkpoints}
    for spec in models:
        _analysed(spec)
    # Every map to compute: (role, epoch or None, image index).
    backends: dict[tuple, ModelBackend] = {}
    layers: dict[tuple, str] = {}
    shared: dict[tuple, tuple] = {}
    for spec in models:
        backends[(spec.role, None)] = spec.backend
        layers[(spec.role, None)] = spec.layer
        for epoch, path in _analysed(spec):
            load = partial(load_model, path, preprocessing=spec.backend.info.preprocessing, **load_options)
            backends[(spec.role, epoch)] = load
            layers[(spec.role, epoch)] = spec.layer
    for spec in models:
        for epoch, path in _analysed(spec):
            if sha256_of(Path(path)) == spec.backend.info.sha256:
                shared[(spec.role, epoch)] = (spec.role, None)
    wanted = [(source, index) for source in backends if source not in shared for index in range(len(images))]
    # The models' own maps first (the counts need only them), then checkpoints in epoch order; roles alternate.
    wanted.sort(key=lambda item: (item[0][1] is not None, item[0][1] or 0, item[1]))
    cache = MapCache(cache_folder, settings) if cache_folder is not None else None
    maps, keys = {}, {}
    if cache is not None:
        for source, index in wanted:
            keys[(source, index)] = cache.key(_sha_of(backends[source]), layers[source], images[index].sha256)
            found = cache.get(keys[(source, index)])
            if found is not None:
                maps[(source, index)] = found
    todo = [item for item in wanted if item not in maps]
    if cache is not None and cache.unreadable:
        notes.append(f"{cache.unreadable} map(s) in the cache {cache.folder.name}/ were unreadable (corrupt or cut "
                     "short) and are computed again")
    started = time.perf_counter()
    store = (lambda item, value: cache.put(keys[item], value)) if cache is not None else None
    maps.update(_compute(todo, backends, layers, images, settings, progress, workers, load_options, store))
    seconds = (time.perf_counter() - started) / len(todo) if todo else float("nan")
    for source, original in shared.items():
        for index in range(len(images)):
            maps[(source, index)] = maps[(original, index)]

    def stacked(source):
        return (np.stack([maps[(source, i)][0] for i in range(len(images))]),
                np.asarray([maps[(source, i)][1] for i in range(len(images))]),
                np.asarray([maps[(source, i)][2] for i in range(len(images))]))

    threshold = settings.concept_threshold
    results: dict[str, ModelConcepts] = {}
    for spec in models:
        entropies, steps, means = stacked((spec.role, None))
        fg = foreground[spec.role] if has_masks else None
        results[spec.role] = ModelConcepts(
            spec.role, spec.layer, model_record(spec.backend, spec.layer), entropies, steps, means,
            count_concepts(entropies, fg, threshold), count_statistics(entropies, fg, threshold))
    differences = {}
    if compare and all(role in results for role in compare):
        a, b = compare
        differences = count_differences(results[a].entropies, results[b].entropies,
                                        foreground[a] if has_masks else None, threshold)

    trajectories: dict[str, TrajectoryConcepts] = {}
    for spec in models:
        if not spec.checkpoints:
            continue
        if not has_masks:
            notes.append(f"{spec.role}: trajectory metrics need object masks (they count foreground concepts); "
                         "not computed")
            continue
        weights_layer = spec.weights_layer or spec.layer
        dist_all = distances[spec.role]
        analysed = _analysed(spec)
        position = {epoch: k for k, (epoch, _) in enumerate(spec.checkpoints)}
        epochs = tuple(epoch for epoch, _ in analysed)
        entropies = np.stack([stacked((spec.role, epoch))[0] for epoch in epochs])
        dist = dist_all[[position[e] for e in epochs]]
        files = tuple({"epoch": epoch, "file": str(path), "sha256": sha256_of(Path(path)),
                       "dist": float(dist_all[position[epoch]]), "analysed": epoch in epochs}
                      for epoch, path in spec.checkpoints)
        trajectories[spec.role] = TrajectoryConcepts(
            spec.role, weights_layer, files, dist_all, epochs, entropies,
            trajectory_metrics(entropies, foreground[spec.role], dist, epochs, threshold))
    trajectory_diff = {}
    if compare and all(role in trajectories for role in compare):
        a, b = (trajectories[role] for role in compare)
        if a.epochs == b.epochs:
            trajectory_diff = trajectory_differences((a.entropies, a.result.dist), (b.entropies, b.result.dist),
                                                     foreground[compare[0]], threshold)
        else:
            notes.append("Student and Base were analysed at different epochs: no paired trajectory differences")
    return ConceptsResult(settings, images, has_masks, foreground, results, differences, trajectories,
                          trajectory_diff, seconds, tuple(notes))


def _analysed(spec: ModelSpec) -> list[tuple[int, Path]]:
    if not spec.checkpoints:
        return []
    if spec.analysed_epochs is None:
        return list(spec.checkpoints)
    known = {epoch for epoch, _ in spec.checkpoints}
    unknown = sorted(set(spec.analysed_epochs) - known)
    if unknown:
        raise ValueError(f"{spec.role}: no checkpoint for epoch(s) {', '.join(map(str, unknown))}; "
                         f"found {', '.join(map(str, sorted(known)))}")
    chosen = [(epoch, path) for epoch, path in spec.checkpoints if epoch in spec.analysed_epochs]
    if len(chosen) < 2:
        raise ValueError(f"{spec.role}: a trajectory needs at least 2 analysed checkpoints")
    return chosen


def _sha_of(backend) -> str:
    return backend.info.sha256 if isinstance(backend, ModelBackend) else sha256_of(Path(backend.args[0]))


class MapCache:
    """Finished maps on disk, one ``.npz`` per (model SHA-256, layer, image SHA-256, settings)."""

    def __init__(self, folder: Path, settings: ConceptSettings):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        recorded = {k: v for k, v in settings.to_json().items() if k != "threshold_b"}  # b does not change maps
        self.settings = json.dumps(recorded, sort_keys=True)
        self.grid = settings.grid
        self.unreadable = 0  # entries found corrupt (and computed again)

    def key(self, model_sha: str, layer: str, image_sha: str) -> str:
        text = "\n".join([model_sha, layer, image_sha, self.settings])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, key: str):
        path = self.folder / f"{key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                entropy, step, mean = np.asarray(data["entropy"], dtype=np.float64), int(data["step"]), float(data["mean"])
        except Exception:  # a corrupt entry (cut short, overwritten): numpy and zipfile raise many types
            entropy = None
        if entropy is None or entropy.shape != (self.grid, self.grid) or not np.isfinite(entropy).all():
            self.unreadable += 1
            return None
        return entropy, step, mean

    def put(self, key: str, value) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, entropy=value[0], step=value[1], mean=value[2])
        atomic_write_bytes(self.folder / f"{key}.npz", buffer.getvalue())


def _compute(wanted, backends, layers, images, settings, progress, workers, load_options, store=None) -> dict:
    total = len(wanted)
    maps: dict = {}
    if not wanted:
        return maps
    if workers <= 1:
        loaded: dict = {}
        for done, (source, index) in enumerate(wanted):
            message = f"{_label(source)}: image {index + 1} of {len(images)}"
            report(progress, done / total, message)
            if source not in loaded:
                backend = backends[source]
                loaded[source] = backend if isinstance(backend, ModelBackend) else backend()

            def on_step(step, steps, done=done, message=message):
                if step and step % 5 == 0:
                    report(progress, (done + step / steps) / total, f"{message}, step {step} of {steps}")

            result = one_map(loaded[source], images[index], layers[source], settings, progress, on_step)
            maps[(source, index)] = (result.entropy, result.step, float(result.mean_entropy[max(result.step, 1) - 1]))
            if store is not None:
                store((source, index), maps[(source, index)])
        report(progress, 1.0, "maps done")
        return maps
    items = []
    for source, index in wanted:
        backend = backends[source]
        path = backend.info.path if isinstance(backend, ModelBackend) else str(backend.args[0])
        options = dict(load_options)
        if not isinstance(backend, ModelBackend):
            options["preprocessing"] = backend.keywords["preprocessing"]
        items.append(_Item((source, index), path, tuple(sorted(options.items(), key=lambda kv: kv[0])),
                           layers[source], str(images[index].path)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(_run_item, item, settings) for item in items}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    key, entropy, step, mean = future.result()
                    maps[key] = (entropy, step, mean)
                    if store is not None:
                        store(key, maps[key])
                report(progress, len(maps) / total, f"{len(maps)} of {total} maps")
        except (Cancelled, KeyboardInterrupt):
            for future in pending:
                future.cancel()
            raise
    return maps


def _label(source) -> str:
    role, epoch = source
    return role if epoch is None else f"{role} epoch {epoch}"
