"""Exceptions as one-line messages for the window. Pure Python: any module may import it at start-up."""
from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's first line (its type's name when it has no message)."""
    text = str(exc).strip().strip("'\"").splitlines()
    return text[0] if text else type(exc).__name__
