"""A dataset folder laid out as ``class_name/image.ext``, its labels, batches and reference samples."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from kdx_engine.labels import class_name_key, is_placeholder_class_names  # noqa: F401 - re-exported
from kdx_engine.data.images import ImageError, LoadedImage, collect_image_paths, load_image, to_batch
from kdx_engine.models.preprocessing import Preprocessing


@dataclass(frozen=True, eq=False)
class DatasetBatch:
    """Preprocessed inputs of the images that loaded, and the errors of those that did not."""

    indices: tuple[int, ...]
    inputs: torch.Tensor
    labels: tuple[int | None, ...]
    images: tuple[LoadedImage, ...]
    errors: tuple[ImageError, ...]


class ImageFolderDataset:
    """Images under ``root``; the top-level folder of an image names its class.

    Folder names are matched to ``class_names`` exactly first, then by ``class_name_key``; images in
    folders that match no class, and images at the root itself, get the label None, and the
    unmatched folder names are listed in ``unknown_folders``. Without ``class_names`` (None or
    empty) the sorted folder names are the classes. Where the names are only the placeholders a
    model without class names gets (``class_0``, ``class_1``, …) and no folder matches them, class k
    is the k-th folder in sorted order (torchvision's ``ImageFolder`` convention, METHODS §3); folders
    beyond the model's classes stay unlabelled, and ``label_note`` says so (None otherwise). Real
    class names (a sidecar's) always take precedence. Masks (``name.mask.png``) come with their images.
    """

    def __init__(self, root: str | os.PathLike, class_names: Sequence[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root.name}: dataset folder not found")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.class_names: tuple[str, ...] = tuple(class_names) if class_names else tuple(folders)
        label_of_folder = _labels_of_folders(folders, self.class_names)
        self.label_note: str | None = None
        if is_placeholder_class_names(self.class_names) and folders and \
                all(label is None for label in label_of_folder.values()):
            label_of_folder, self.label_note = _labels_by_sorted_folders(folders, len(self.class_names))
        self.unknown_folders: tuple[str, ...] = tuple(f for f in folders if label_of_folder[f] is None)
        self.paths: tuple[Path, ...] = tuple(collect_image_paths([self.root]))
        self.labels: tuple[int | None, ...] = tuple(
            label_of_folder[_top_folder(path, self.root)] if _top_folder(path, self.root) else None
            for path in self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[LoadedImage, int | None]:
        """The image (with its mask) and its label index; a bad file raises ImageError."""
        return load_image(self.paths[index]), self.labels[index]

    def batches(self, preprocessing: Preprocessing, batch_size: int = 32,
                indices: Sequence[int] | None = None) -> Iterator[DatasetBatch]:
        """Batches of ``batch_size`` loaded images as model inputs, bad files skipped and reported.

        Each batch is filled with good images; the errors met while filling it travel with it. The
        last batch may be short, and holds no images at all when only failures were left.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = range(len(self)) if indices is None else indices
        taken: list[tuple[int, LoadedImage]] = []
        errors: list[ImageError] = []
        for index in order:
            try:
                taken.append((index, load_image(self.paths[index])))
            except ImageError as exc:
                errors.append(exc)
            if len(taken) == batch_size:
                yield self._batch(taken, errors, preprocessing)
                taken, errors = [], []
        if taken or errors:
            yield self._batch(taken, errors, preprocessing)

    def balanced_sample(self, n: int, seed: int = 0) -> list[int]:
        """Indices of ``n`` images spread as evenly as possible over the classes, reproducible by seed:
        ``balanced_indices(self.labels, n, seed)``."""
        return balanced_indices(self.labels, n, seed)

    def _batch(self, taken: list[tuple[int, LoadedImage]], errors: list[ImageError],
               preprocessing: Preprocessing) -> DatasetBatch:
        images = tuple(image for _, image in taken)
        return DatasetBatch(
            indices=tuple(index for index, _ in taken),
            inputs=to_batch(images, preprocessing),
            labels=tuple(self.labels[index] for index, _ in taken),
            images=images,
            errors=tuple(errors),
        )


def balanced_order(labels: Sequence[int | None], seed: int) -> list[int]:
    """Every index of ``labels`` in a seeded, class-balanced draw order: classes take turns (in a seeded
    order) giving one random image each until all are drawn; unlabelled images follow at the end, in
    their own order (they take part in the draw only when no image has a label). The first k, sorted,
    are ``balanced_indices(labels, k, seed)``; the one sampler of folders, galleries and reference sets."""
    drawn, unlabelled = _balanced_draw(labels, seed)
    return drawn + unlabelled


def balanced_indices(labels: Sequence[int | None], k: int, seed: int = 0) -> list[int]:
    """``k`` indices spread as evenly as possible over the classes, reproducible by seed, sorted:
    the first k of ``balanced_order``'s draw; unlabelled images only when no image has a label."""
    if k < 0:
        raise ValueError(f"sample size must not be negative, got {k}")
    return sorted(_balanced_draw(labels, seed)[0][:k])


def _balanced_draw(labels: Sequence[int | None], seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        if label is not None:
            groups.setdefault(label, []).append(index)
    unlabelled = [i for i, label in enumerate(labels) if label is None]
    if not groups and len(labels):
        groups[-1], unlabelled = list(range(len(labels))), []
    pools = [list(rng.permutation(groups[label])) for label in sorted(groups)]
    pools = [pools[i] for i in rng.permutation(len(pools))]
    drawn: list[int] = []
    while any(pools):
        for pool in pools:
            if pool:
                drawn.append(int(pool.pop()))
    return drawn, unlabelled


def _labels_by_sorted_folders(folders: Sequence[str], num_classes: int) -> tuple[dict[str, int | None], str]:
    """torchvision's ImageFolder convention: class k is the k-th folder name in sorted order."""
    labels = {folder: (k if k < num_classes else None) for k, folder in enumerate(sorted(folders))}
    shown = ", ".join(f"{folder} → {label}" for folder, label in labels.items() if label is not None)
    note = (f"the models carry no class names: true labels follow the sorted folder names "
            f"(torchvision ImageFolder convention): {shown}")
    extra = [folder for folder, label in labels.items() if label is None]
    if extra:
        note += f"; {len(extra)} folder(s) beyond the models' {num_classes} classes left unlabelled"
    return labels, note + " (class names in a sidecar override this)"


def _labels_of_folders(folders: Sequence[str], class_names: Sequence[str]) -> dict[str, int | None]:
    exact = {name: i for i, name in enumerate(class_names)}
    loose: dict[str, int] = {}
    for i, name in enumerate(class_names):
        loose.setdefault(class_name_key(name), i)
    return {folder: exact.get(folder, loose.get(class_name_key(folder))) for folder in folders}


def _top_folder(path: Path, root: Path) -> str | None:
    """The folder directly under ``root`` that holds ``path``; None for a file at the root."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None
