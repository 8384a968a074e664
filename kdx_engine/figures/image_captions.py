"""Captions that tell images apart: a file's name, with as many parent folders as it takes where two
images share a name ("a/img.png", "b/img.png"), and a number where even the folders agree."""
from __future__ import annotations

from collections import Counter
from pathlib import PurePath
from typing import Sequence


def distinct_captions(items: Sequence[tuple[str, str | None]]) -> list[str]:
    """One caption per ``(name, source path or None)``: the name alone when it is unique, else the
    shortest run of parent folders that sets it apart, else the name numbered in order ("img.png (2)")."""
    names = [name for name, _ in items]
    folders = [_folders(source) for _, source in items]
    depths = [0] * len(items)
    captions = list(names)
    while True:
        counts = Counter(captions)
        grow = [i for i, caption in enumerate(captions) if counts[caption] > 1 and depths[i] < len(folders[i])]
        if not grow:
            break
        for i in grow:
            depths[i] += 1
            captions[i] = "/".join([*folders[i][len(folders[i]) - depths[i]:], names[i]])
    counts, seen = Counter(captions), Counter()
    for i, caption in enumerate(captions):
        if counts[caption] > 1:
            seen[caption] += 1
            if seen[caption] > 1:
                captions[i] = f"{caption} ({seen[caption]})"
    return captions


def _folders(source: str | None) -> tuple[str, ...]:
    """The folders above a file, outermost first, without the root or drive."""
    if not source:
        return ()
    parent = PurePath(source).parent
    return tuple(part for part in parent.parts if part != parent.anchor)
