"""Exceptions as one-line messages (for ``kdx: error: …`` lines, panel messages and notes), and file
names as text that can be printed and stored. Pure Python, no torch: the window imports it at start-up."""
from __future__ import annotations

import re
import struct

_ENFORCE_PREFIX = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")


def first_line(exc: BaseException) -> str:
    """An exception's first line without a closing full stop (a KeyError's key unquoted); its type's
    name when it has no message."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    lines = text.strip().splitlines()
    return lines[0].rstrip(".") if lines and lines[0].rstrip(".") else type(exc).__name__


def reader_problem(exc: BaseException) -> str:
    """The useful part of a file reader's error: one sentence without c10's ``[enforce fail at …]``
    prefix, or a plain description where the reader's text says nothing (a bare key, "see the warnings
    above")."""
    if "warnings above" in str(exc):  # torch.export logs the real error, then raises this
        return "not an exported program, or corrupt"
    if isinstance(exc, (KeyError, IndexError, EOFError, struct.error)) or "Errno" in str(exc):
        return "truncated or corrupt"
    if "Weights only load failed" in str(exc) or "weights_only" in str(exc):
        return "corrupt, or not a checkpoint"
    text = _ENFORCE_PREFIX.sub("", first_line(exc))
    text = text.split(". ")[0].rstrip(".")
    if len(text) < 8 or not re.search(r"[A-Za-z]{3}", text):  # a bare key or number says nothing
        return "corrupt, or not a checkpoint"
    return text


def printable(text: str) -> str:
    """``text`` (a file name or path) as valid UTF-8: bytes of a name that were not UTF-8 (Python's
    surrogate escapes) are shown as ``\\xe9``, so the name can be printed, stored and drawn."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
