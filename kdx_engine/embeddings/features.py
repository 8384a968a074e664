"""Penultimate features and logits of each model for a dataset folder or a list of images, in one
forward pass per batch and model (``PENULTIMATE``: the pooled vector entering the classifier, the
feature layer UniCAM uses, on every backend)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import ImageFolderDataset
from ..data.images import LoadedImage, to_batch
from ..jobs import Progress, report
from ..models.backend import PENULTIMATE, ModelBackend, model_label

FEATURE_LAYER = PENULTIMATE


@dataclass(frozen=True, eq=False)
class ModelOutputs:
    """Per image (rows, in the same order everywhere): file, true label (None when unknown), each
    model's penultimate features (n×d, float64) and logits (n×K, float64); the files that failed."""

    paths: tuple[str, ...]
    labels: tuple[int | None, ...]
    features: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]
    class_names: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    feature_layer: str = FEATURE_LAYER

    @property
    def n(self) -> int:
        return len(self.paths)

    def labels_array(self) -> np.ndarray:
        """The labels as int64 with −1 where unknown."""
        return np.asarray([-1 if label is None else int(label) for label in self.labels], dtype=np.int64)


def _check_models(models: Mapping[str, ModelBackend]) -> None:
    if not models:
        raise ValueError("features need at least one model")
    for role, model in models.items():
        if PENULTIMATE not in model.layer_names():
            name = model_label(model.info) or role
            raise ValueError(f"{name}: no penultimate layer found (the input of the final classifier); "
                             "embeddings need it")


def _batch_outputs(models, images: Sequence[LoadedImage]) -> tuple[dict, dict]:
    features, logits = {}, {}
    for role, model in models.items():
        x = to_batch(list(images), model.info.preprocessing).to(model.device)
        with torch.no_grad():
            forward = model.forward(x, [PENULTIMATE])
        features[role] = forward.activations[PENULTIMATE].detach().flatten(1).double().cpu().numpy()
        logits[role] = forward.logits.detach().double().cpu().numpy()
    return features, logits


def _assembled(models, chunks, paths, labels, class_names, skipped) -> ModelOutputs:
    features = {role: np.concatenate([c[0][role] for c in chunks]) if chunks else np.zeros((0, 0))
                for role in models}
    logits = {role: np.concatenate([c[1][role] for c in chunks]) if chunks else np.zeros((0, 0))
              for role in models}
    for role, values in logits.items():
        if not np.isfinite(values).all() or not np.isfinite(features[role]).all():
            raise ValueError(f"{model_label(models[role].info) or role}: non-finite features or logits")
    return ModelOutputs(tuple(paths), tuple(labels), features, logits, tuple(class_names), tuple(skipped))


def dataset_outputs(models: Mapping[str, ModelBackend], dataset: ImageFolderDataset, batch_size: int = 32,
                    progress: Progress | None = None, indices: Sequence[int] | None = None) -> ModelOutputs:
    """Features and logits of every readable image of ``dataset`` (or of ``indices``); bad files are
    skipped and named in ``skipped``."""
    _check_models(models)
    total = len(dataset) if indices is None else len(indices)
    chunks, paths, labels, skipped = [], [], [], []
    first = next(iter(models.values())).info.preprocessing
    for batch in dataset.batches(first, batch_size=batch_size, indices=indices):
        skipped += [str(error) for error in batch.errors]
        if batch.images:
            chunks.append(_batch_outputs(models, batch.images))
            paths += [str(image.path) for image in batch.images]
            labels += list(batch.labels)
        report(progress, len(paths) / max(total, 1), f"features of {len(paths)}/{total} images")
    return _assembled(models, chunks, paths, labels, dataset.class_names, skipped)


def image_outputs(models: Mapping[str, ModelBackend], images: Sequence[LoadedImage],
                  labels: Iterable[int | None], batch_size: int = 32, progress: Progress | None = None,
                  class_names: Sequence[str] = ()) -> ModelOutputs:
    """Features and logits of already loaded images (e.g. a gallery) with their labels."""
    _check_models(models)
    labels = list(labels)
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    chunks = []
    for start in range(0, len(images), batch_size):
        chunks.append(_batch_outputs(models, images[start:start + batch_size]))
        done = min(start + batch_size, len(images))
        report(progress, done / max(len(images), 1), f"features of {done}/{len(images)} images")
    return _assembled(models, chunks, [str(Path(image.path)) for image in images], labels, class_names, ())
