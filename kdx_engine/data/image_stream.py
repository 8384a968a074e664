"""A dataset's images streamed in batches, decoded ahead on worker threads: the one stream behind dataset
scans and dataset metrics. Only a bounded window of images is in memory at any time, so memory stays
flat in the number of images; a file that cannot be read travels with its batch as an ``ImageError``.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from kdx_engine.data.images import ImageError, LoadedImage, load_image
from kdx_engine.file_reading import special_kind


@dataclass(frozen=True, eq=False)
class StreamItem:
    """One entry of the stream: its position, path and label, and the image or why it is missing."""

    index: int
    path: Path
    label: int | None
    image: LoadedImage | None = None
    error: ImageError | None = None
    sha256: str = ""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (what ``LoadedImage.sha256`` holds), or "" when it cannot be read."""
    digest = hashlib.sha256()
    if special_kind(path) is not None:
        return ""
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def read_item(index: int, path: Path, label: int | None) -> StreamItem:
    """The stream entry of one file: the loaded image, or the error that says why it is missing."""
    try:
        image = load_image(path)
    except ImageError as exc:
        return StreamItem(index, path, label, error=exc, sha256=file_sha256(path))
    return StreamItem(index, path, label, image=image, sha256=image.sha256)


def default_workers() -> int:
    """Decoding threads: the machine's cores, at most 8 (Pillow releases the GIL while decoding)."""
    return max(1, min(8, os.cpu_count() or 1))


def image_batches(paths: Sequence[str | os.PathLike], labels: Sequence[int | None], batch_size: int,
                  workers: int | None = None, skip: Callable[[int], bool] | None = None) -> Iterator[list[StreamItem]]:
    """Batches of ``batch_size`` StreamItems in path order; ``skip(index)`` leaves an entry out unread.
    The next batch is decoded while the caller works on the current one (two batches in memory)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = [i for i in range(len(paths)) if skip is None or not skip(i)]
    chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="kdx-read") as pool:
        def submit(chunk):
            return [pool.submit(read_item, i, Path(paths[i]), labels[i]) for i in chunk]

        pending = submit(chunks[0]) if chunks else []
        for number in range(len(chunks)):
            current = pending
            pending = submit(chunks[number + 1]) if number + 1 < len(chunks) else []
            yield [future.result() for future in current]
