"""Checks that an output location can be written, made before any work is done, so a long run never
ends in "cannot write" and nothing is left half-written."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .messages import printable


def check_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Raise ValueError naming ``folder`` when files cannot be created in it (or in the nearest existing
    folder above it, where it does not exist yet)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{folder}: cannot write the {what} there: {probe} is a file, not a folder")
    try:
        # named as atomic_files' temporaries (which this layer may not import), so one left by a kill is cleaned
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".kdx-write-check.kdx-tmp-"):
            pass
    except OSError as exc:
        raise ValueError(f"{folder}: cannot write the {what} there ({exc.strerror or exc})") from exc


def check_new_file(path: str | os.PathLike, overwrite: bool, what: str = "output") -> None:
    """Raise when ``path`` exists (without ``overwrite``), is a folder, or its folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name for the {what}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (use --overwrite)")
    check_writable_folder(path.parent if str(path.parent) else Path("."), what)


MAX_STEM_BYTES = 120  # leaves room for suffixes such as "_gradcam_student.npy" within a name's 255 bytes


def output_stem(stem: str) -> str:
    """A stem that can name output files: printable, and at most ``MAX_STEM_BYTES`` bytes of UTF-8 (a
    longer one is cut and ends in 8 hex digits of its hash, so different long stems stay different)."""
    text = printable(stem).replace("\\", "_")
    raw = text.encode("utf-8")
    if len(raw) <= MAX_STEM_BYTES:
        return text
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return raw[:MAX_STEM_BYTES - 9].decode("utf-8", "ignore") + "-" + digest


def unique_stems(stems) -> list[str]:
    """The stems made unique in order (``img``, ``img_1``, …), so files named after them never overwrite;
    each made an ``output_stem`` first."""
    names, seen = [], set()
    for stem in map(output_stem, stems):
        name, count = stem, 0
        while name in seen:
            count += 1
            name = f"{stem}_{count}"
        seen.add(name)
        names.append(name)
    return names
