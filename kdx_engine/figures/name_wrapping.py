"""A long file name broken into lines at sensible places: after ``_ - .`` and spaces, before a capital
that follows a lower-case letter (camelCase) or between letters and digits, and cut hard only where a
piece alone is too long."""
from __future__ import annotations

import re
from typing import Callable

# A break is allowed after a separator, between a lower-case letter and a capital, and where letters
# meet digits; the pieces keep every character, so joining the lines gives the name back.
_BREAK = re.compile(r"(?<=[_\-. ])(?=.)|(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


def name_pieces(name: str) -> list[str]:
    """The name split at every place a line may break; a short extension stays with the piece before it."""
    pieces = [piece for piece in _BREAK.split(name) if piece]
    if len(pieces) > 1 and pieces[-2].endswith(".") and len(pieces[-1]) <= 5:
        pieces[-2:] = [pieces[-2] + pieces[-1]]
    return pieces


def wrap_name(name: str, width: float, measure: Callable[[str], float] = len, max_lines: int | None = None) -> list[str]:
    """Lines of ``name``, each at most ``width`` by ``measure`` (characters by default), filled greedily
    with whole pieces; a piece wider than a line is cut where the line is full. With ``max_lines`` (at
    least 3), the middle lines give way to "…" so the start and the end (the extension) stay."""
    lines: list[str] = []
    line = ""
    for piece in name_pieces(name):
        if line and measure(line + piece) > width and measure(piece) <= width:
            lines.append(line)
            line = ""
        while measure(line + piece) > width and len(line + piece) > 1:
            cut = _longest_fitting(line + piece, width, measure)
            lines.append((line + piece)[:cut])
            line, piece = "", (line + piece)[cut:]
        line += piece
    if line or not lines:
        lines.append(line)
    if max_lines is not None and len(lines) > max_lines:
        lines = [*lines[:max(max_lines, 3) - 2], "…", lines[-1]]
    return lines


def _longest_fitting(text: str, width: float, measure: Callable[[str], float]) -> int:
    """How many leading characters of ``text`` fit in ``width`` (at least one)."""
    count = 1
    while count < len(text) and measure(text[:count + 1]) <= width:
        count += 1
    return count
