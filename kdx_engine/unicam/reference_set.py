"""The UniCAM reference set: n−1 images chosen seeded and class-balanced (METHODS.md §4).

The same seeded, class-balanced draw that picks the n−1 members goes on to pick a pool of spares (by
default n−1 more), so that a query which is itself a member can be swapped for a spare of its class
(``replacing``), and a file that fails to load is skipped, reported in ``skipped`` and replaced by
the next image of the draw.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data.datasets import ImageFolderDataset, balanced_order
from ..data.images import ImageError, LoadedImage

DEFAULT_N = 16  # reference images + the query (our choice, METHODS §4)


@dataclass(frozen=True)
class Replacement:
    """A member that equals the query (same file hash) and the spare that took its place (None: none
    was left, the member was dropped)."""

    sha256: str
    by: str | None
    label: int | None = None
    by_label: int | None = None
    same_class: bool = True

    def record(self) -> dict:
        return {"sha256": self.sha256, "by": self.by, "label": self.label, "by_label": self.by_label,
                "same_class": self.same_class}


@dataclass(frozen=True, eq=False)
class ReferenceSet:
    """Reference images with their labels (None where unknown) and where they came from.

    ``spares`` (with ``spare_labels``) continue the seeded draw after the members, in draw order;
    ``skipped`` holds the messages of the files that could not be loaded (``"<file>: <problem>"``).
    """

    images: tuple[LoadedImage, ...]
    labels: tuple[int | None, ...]
    source: str
    seed: int = 0
    spares: tuple[LoadedImage, ...] = ()
    spare_labels: tuple[int | None, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Identity of the set for caches and exports: the hash of its image hashes."""
        return hashlib.sha256("".join(image.sha256 for image in self.images).encode()).hexdigest()

    @property
    def hashes(self) -> list[str]:
        return [image.sha256 for image in self.images]

    @property
    def n(self) -> int:
        """Reference images + the query."""
        return len(self.images) + 1

    def contains(self, image: LoadedImage) -> bool:
        """Whether ``image`` is a member: the same decoded pixels (a renamed or re-encoded copy is one)."""
        return image.pixel_sha256 in {member.pixel_sha256 for member in self.images}

    def replacing(self, image: LoadedImage) -> tuple["ReferenceSet", tuple[Replacement, ...]]:
        """This set with every member equal to ``image`` swapped for a spare (the first of the draw
        with the member's label, else the first left), and what was swapped; ``self`` if none is.

        A member with no spare left is dropped, as long as n ≥ 4 remains; otherwise ValueError.
        """
        if not self.contains(image):
            return self, ()
        used = {member.pixel_sha256 for member in self.images} | {image.pixel_sha256}
        free = [i for i, spare in enumerate(self.spares) if spare.pixel_sha256 not in used]
        images, labels, swaps = list(self.images), list(self.labels), []
        for position in [i for i, member in enumerate(self.images) if member.pixel_sha256 == image.pixel_sha256]:
            label = self.labels[position]
            same = [i for i in free if self.spare_labels[i] == label]
            pick = same[0] if same else (free[0] if free else None)
            if pick is None:
                swaps.append(Replacement(image.sha256, None, label, None, False))
                images[position] = None
                continue
            free.remove(pick)
            spare, spare_label = self.spares[pick], self.spare_labels[pick]
            images[position], labels[position] = spare, spare_label
            swaps.append(Replacement(image.sha256, spare.sha256, label, spare_label, spare_label == label))
        kept = [i for i, member in enumerate(images) if member is not None]
        if len(kept) + 1 < 4:
            raise ValueError(f"the query is in the reference set and no spare image is left to replace it; "
                             f"UniCAM needs n ≥ 4 (reference + query), {len(kept) + 1} remain")
        swapped_out = {s.by for s in swaps if s.by}
        spares = [(s, l) for s, l in zip(self.spares, self.spare_labels) if s.sha256 not in swapped_out]
        return ReferenceSet(tuple(images[i] for i in kept), tuple(labels[i] for i in kept), self.source, self.seed,
                            tuple(s for s, _ in spares), tuple(l for _, l in spares), self.skipped), tuple(swaps)

    @classmethod
    def from_folder(cls, root, n: int = DEFAULT_N, seed: int = 0, class_names: Sequence[str] | None = None,
                    spares: int | None = None):
        """n−1 images from an ImageFolder tree (``class_name/image``), seeded and class-balanced, and
        ``spares`` more (default n−1) from the same draw. Bad files are skipped and reported."""
        dataset = ImageFolderDataset(root, class_names=class_names)
        if len(dataset) < n - 1:
            raise ValueError(f"{Path(root).name}: {len(dataset)} images, a reference set of n = {n} needs {n - 1}")
        wanted = n - 1 + (n - 1 if spares is None else spares)
        taken: list[tuple[int, LoadedImage, int | None]] = []
        skipped: list[str] = []
        for index in balanced_order(dataset.labels, seed):
            if len(taken) == wanted:
                break
            try:
                taken.append((index, *dataset[index]))
            except ImageError as exc:
                skipped.append(str(exc))
        if len(taken) < n - 1:
            raise ValueError(f"{Path(root).name}: {len(taken)} images load ({len(skipped)} skipped: "
                             f"{'; '.join(skipped[:3])}), a reference set of n = {n} needs {n - 1}")
        members, pool = sorted(taken[:n - 1], key=lambda t: t[0]), taken[n - 1:]  # members in folder order
        return cls(tuple(p[1] for p in members), tuple(p[2] for p in members), str(root), seed,
                   tuple(p[1] for p in pool), tuple(p[2] for p in pool), tuple(skipped))

    @classmethod
    def from_images(cls, images: Sequence[LoadedImage], labels: Sequence[int | None], n: int = DEFAULT_N,
                    seed: int = 0, source: str = "gallery", spares: int | None = None):
        """n−1 of the given images (e.g. the gallery), seeded and class-balanced by label with the draw
        ``from_folder`` uses (``balanced_order``: one seed, one set, whether the images come from a folder or
        the gallery), and ``spares`` more (default n−1) from the same draw."""
        if len(images) < n - 1:
            raise ValueError(f"{len(images)} images given, a reference set of n = {n} needs {n - 1}")
        order = balanced_order(list(labels), seed)
        members = sorted(order[:n - 1])
        pool = order[n - 1:n - 1 + (n - 1 if spares is None else spares)]
        return cls(tuple(images[i] for i in members), tuple(labels[i] for i in members), source, seed,
                   tuple(images[i] for i in pool), tuple(labels[i] for i in pool))
