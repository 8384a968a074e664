"""Reading the user's files safely: only regular files, and small files only up to a size checked
before anything is read. A link to ``/dev/zero`` or ``/dev/urandom`` would read until memory runs out
and a FIFO would block for ever; both are refused by name instead.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

SIDECAR_LIMIT = 1024 * 1024  # a .kdx.json sidecar is a few hundred bytes
PROJECT_LIMIT = 64 * 1024 * 1024  # a .kdx project: paths and settings, results beside it
IMAGE_LIMIT = 1024 * 1024 * 1024  # an image file; its pixels are checked against the bomb limit after


class SpecialFileError(OSError):
    """A path that is not a regular file (a FIFO, a device, a socket), or a file over its size limit;
    the message is ``"<file name>: <problem>"``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.problem = problem
        super().__init__(f"{Path(path).name}: {problem}")


def special_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is not a regular file (links followed), e.g. ``"a FIFO"``;
    None for a regular file or a path that does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular(path: str | os.PathLike) -> None:
    """SpecialFileError naming ``path`` when it exists and is not a regular file."""
    kind = special_kind(path)
    if kind is not None:
        raise SpecialFileError(path, f"is {kind}, not a regular file")


def read_limited(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (``what`` it is, for the message), refused when it is
    larger than ``limit`` bytes; the size is checked before reading and again while reading."""
    check_regular(path)
    size = os.stat(path).st_size
    if size > limit:
        raise SpecialFileError(path, f"{what} of {size:,} bytes is larger than the {limit:,} bytes "
                                     "such a file can be")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise SpecialFileError(path, f"{what} is larger than {limit:,} bytes")
    return data


def read_limited_text(path: str | os.PathLike, limit: int, what: str) -> str:
    """``read_limited`` decoded as UTF-8 (UnicodeDecodeError passes through)."""
    return read_limited(path, limit, what).decode("utf-8")
