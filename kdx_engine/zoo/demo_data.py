"""The demo's data, regenerated on demand from its seed (nothing large is committed)."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kdx_engine.data.synthetic import (
    DEMO_CUE_AGREEMENT,
    SyntheticConfig,
    SyntheticSplit,
    cue_aligned_split,
    cue_shuffled_split,
    demo_splits,
    generate_split,
    write_image_folder,
)
from kdx_engine.models.architectures.demo_nets import DEMO_IMAGE_SIZE

DEMO_DATA = SyntheticConfig(size=DEMO_IMAGE_SIZE, seed=0)
ZOO_SPLIT_SIZES = {"train_labelled": 2000, "transfer": 3000, "teacher_train": 5000, "test": 1000}
TEST_SLICE = 500  # the first TEST_SLICE images of the "test" split: the zoo's recorded accuracies


def zoo_splits(config: SyntheticConfig = DEMO_DATA,
               sizes: Mapping[str, int] = ZOO_SPLIT_SIZES) -> dict[str, SyntheticSplit]:
    """Every split the zoo is trained and measured on (see ``demo_splits``)."""
    return demo_splits(config, dict(sizes))


def fixed_test_slice(config: SyntheticConfig = DEMO_DATA, n: int = TEST_SLICE) -> SyntheticSplit:
    """The fixed test slice: a prefix of the ``test`` split (cue independent of the class)."""
    return generate_split(config, "test", n, None)


def subset(split: SyntheticSplit, indices) -> SyntheticSplit:
    """The images ``indices`` of ``split``, as a split of their own."""
    indices = np.asarray(indices, dtype=np.int64)
    return dataclasses.replace(split, images=split.images[indices], masks=split.masks[indices],
                               labels=split.labels[indices], cue_labels=split.cue_labels[indices])


def balanced_prefix(split: SyntheticSplit, per_class: int) -> SyntheticSplit:
    """The first ``per_class`` images of each class, in split order."""
    chosen = [i for k in range(split.config.num_classes)
              for i in np.flatnonzero(split.labels == k)[:per_class]]
    return subset(split, sorted(chosen))


def demo_split(name: str, n: int, config: SyntheticConfig = DEMO_DATA) -> SyntheticSplit:
    """``n`` images of one demo split, regenerated: a generated split's prefix, or the first ``n``
    test scenes re-cued (``test_cue_shuffled`` permutes the cues among those ``n``)."""
    if name in ("test_cue_shuffled", "test_cue_aligned"):
        scenes = generate_split(config, "test", n, None)
        return cue_shuffled_split(scenes) if name == "test_cue_shuffled" else cue_aligned_split(scenes)
    if name not in ZOO_SPLIT_SIZES:
        raise ValueError(f"unknown demo split {name!r}; known: {', '.join(ZOO_SPLIT_SIZES)}, "
                         "test_cue_shuffled, test_cue_aligned")
    return generate_split(config, name, n, DEMO_CUE_AGREEMENT if name == "train_labelled" else None)


def write_demo_dataset(root: str | os.PathLike, n: int = 200, split: str = "test",
                       config: SyntheticConfig = DEMO_DATA) -> Path:
    """Regenerate ``n`` images of a demo split, with masks, as an ImageFolder tree under ``root``."""
    return write_image_folder(demo_split(split, n, config), None, root)
