"""Atomic writes: a temporary file in the same folder, then a rename, so a file is never half-written.

A new file gets the mode ``open()`` would give it (``0o666`` minus the umask); a replaced file keeps
its mode. Temporaries are named ``.<name>.kdx-tmp-<random>``, so ones left by a killed process are
recognisable: ``clean_stale_temporaries`` removes those (and only those) once they are old, and every
atomic write runs it on its folder the first time it writes there in this process.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

TEMP_MARKER = ".kdx-tmp-"
STALE_AFTER_S = 3600.0
_TEMP_NAME = re.compile(r"^\..+\.kdx-tmp-[A-Za-z0-9_]{4,}$")
_LOCK = threading.Lock()
_UMASK: int | None = None
_CLEANED: set[str] = set()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    _clean_once(path.parent)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{_short(path.name)}{TEMP_MARKER}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _short(name: str, limit: int = 200) -> str:
    """``name`` cut to at most ``limit`` bytes, so the temporary's name stays within the usual 255."""
    raw = os.fsencode(name)
    return name if len(raw) <= limit else os.fsdecode(raw[:limit])


@contextmanager
def staged_folder(target: Path, then: Callable[[], None] | None = None) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write a whole result into, named as our temporaries
    (``.<name>.kdx-tmp-<random>``); when the block succeeds it replaces ``target`` (an old ``target`` is
    moved aside first and removed only once the new one is in place), and when it fails it is removed. A
    process killed midway leaves ``target`` as it was and a temporary that ``clean_stale_temporaries``
    removes later. ``then`` runs right after the swap, before the old folder is removed (the export writes
    its figure there, so a kill between the two leaves a mix only within that moment)."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    _clean_once(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{_short(target.name)}{TEMP_MARKER}", dir=parent))
    staging.chmod(0o777 & ~current_umask())
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{_short(target.name)}{TEMP_MARKER}old", dir=parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
        if then is not None:
            then()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of our temporaries (``.<name>.kdx-tmp-<random>``)."""
    return bool(_TEMP_NAME.match(name))


def clean_stale_temporaries(folder, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove our own temporaries (``.<name>.kdx-tmp-<random>`` files and staged folders) in ``folder``
    last modified more than ``older_than_s`` seconds ago; nothing else is touched. Returns what was removed."""
    folder = Path(folder)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_temporary_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if now - info.st_mtime <= older_than_s:
                continue
            if stat.S_ISREG(info.st_mode):
                os.unlink(entry.path)
            elif stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path)
            else:
                continue
            removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


def current_umask() -> int:
    """The process umask: from /proc where the kernel shows it (no race, follows changes), else read
    once by setting and restoring it under a lock."""
    global _UMASK
    shown = _umask_from_proc()
    if shown is not None:
        return shown
    with _LOCK:
        if _UMASK is None:
            _UMASK = os.umask(0o077)
            os.umask(_UMASK)
        return _UMASK


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)  # a replaced file keeps its mode, as open() would
    except OSError:
        return 0o666 & ~current_umask()


def _clean_once(folder: Path) -> None:
    key = os.path.abspath(folder)
    with _LOCK:
        if key in _CLEANED:
            return
        _CLEANED.add(key)
    clean_stale_temporaries(folder)
