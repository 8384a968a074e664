"""The UniCAM reference set: n−1 images chosen seeded and class-balanced (METHODS.md §4)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data.datasets import ImageFolderDataset
from ..data.images import LoadedImage

DEFAULT_N = 16  # reference images + the query (our choice, METHODS §4)


@dataclass(frozen=True, eq=False)
class ReferenceSet:
    """Reference images with their labels (None where unknown) and where they came from."""

    images: tuple[LoadedImage, ...]
    labels: tuple[int | None, ...]
    source: str
    seed: int = 0

    @property
    def key(self) -> str:
        """Identity of the set for caches and exports: the hash of its image hashes."""
        return hashlib.sha256("".join(image.sha256 for image in self.images).encode()).hexdigest()

    @property
    def hashes(self) -> list[str]:
        return [image.sha256 for image in self.images]

    @classmethod
    def from_folder(cls, root, n: int = DEFAULT_N, seed: int = 0, class_names: Sequence[str] | None = None):
        """n−1 images from an ImageFolder tree (``class_name/image``), seeded and class-balanced."""
        dataset = ImageFolderDataset(root, class_names=class_names)
        if len(dataset) < n - 1:
            raise ValueError(f"{Path(root).name}: {len(dataset)} images, a reference set of n = {n} needs {n - 1}")
        chosen = dataset.balanced_sample(n - 1, seed=seed)
        pairs = [dataset[i] for i in chosen]
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), str(root), seed)

    @classmethod
    def from_images(cls, images: Sequence[LoadedImage], labels: Sequence[int | None], n: int = DEFAULT_N,
                    seed: int = 0, source: str = "gallery"):
        """n−1 of the given images (e.g. the gallery), seeded and class-balanced by label."""
        if len(images) < n - 1:
            raise ValueError(f"{len(images)} images given, a reference set of n = {n} needs {n - 1}")
        chosen = _balanced_indices(list(labels), n - 1, seed)
        return cls(tuple(images[i] for i in chosen), tuple(labels[i] for i in chosen), source, seed)


def _balanced_indices(labels: list[int | None], k: int, seed: int) -> list[int]:
    import numpy as np

    rng = np.random.default_rng(seed)
    groups: dict = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    queues = [list(rng.permutation(members)) for _, members in sorted(groups.items(), key=lambda kv: str(kv[0]))]
    chosen: list[int] = []
    while len(chosen) < k:
        for queue in rng.permutation(len(queues)):
            if queues[queue] and len(chosen) < k:
                chosen.append(int(queues[queue].pop()))
    return sorted(chosen)
