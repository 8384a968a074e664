"""Duplicated images in a dataset: the same file under another name (file hash), or the same pixels
after decoding (a re-encoded or converted copy). Statistics over images assume distinct images; a copy
counts one image twice, moves the value and narrows its interval."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdx_engine.data.images import LoadedImage
from kdx_engine.messages import printable


@dataclass(frozen=True)
class Duplicate:
    """``path`` repeats ``first``: the ``same file`` or the ``same pixels``."""

    path: Path
    first: Path
    how: str

    def __str__(self) -> str:
        return f"{_shown(self.path)} = {_shown(self.first)} ({self.how})"


def _shown(path: Path) -> str:
    return printable(f"{path.parent.name}/{path.name}" if path.parent.name else path.name)


class DuplicateFinder:
    """Remembers the images it is shown; ``seen(image)`` is True (and the duplicate recorded in
    ``found``) for an image whose file or decoded pixels it met before."""

    def __init__(self):
        self._files: dict[str, Path] = {}
        self._pixels: dict[str, Path] = {}
        self.found: list[Duplicate] = []

    def seen(self, image: LoadedImage) -> bool:
        first, how = (self._files.get(image.sha256), "same file") if image.sha256 else (None, "")
        if first is None:
            first, how = self._pixels.get(image.pixel_sha256), "same pixels"
        if first is not None:
            self.found.append(Duplicate(image.path, first, how))
            return True
        if image.sha256:
            self._files[image.sha256] = image.path
        self._pixels[image.pixel_sha256] = image.path
        return False
