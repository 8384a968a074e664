"""Exceptions as one-line messages (for ``kdx: error: …`` lines, panel messages and notes). Pure
Python, no torch: the window imports it at start-up."""
from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's first line without a closing full stop (a KeyError's key unquoted); its type's
    name when it has no message."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    lines = text.strip().splitlines()
    return lines[0].rstrip(".") if lines and lines[0].rstrip(".") else type(exc).__name__
