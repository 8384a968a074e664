"""The three model roles and the panels of a comparison (plain names, no torch: the GUI imports this
module before the engine has loaded)."""
from __future__ import annotations

ROLES = ("teacher", "student", "base")
ROLE_TITLES = {"teacher": "Teacher", "student": "Student", "base": "Base"}
ROLE_LETTERS = {"teacher": "T", "student": "S", "base": "B"}
PANEL_KEYS = ("input", "teacher", "student", "base", "distilled", "residual", "difference")
UNICAM_KEYS = ("distilled", "residual")


def unicam_pair(key: str, roles) -> tuple[str, str]:
    """(explained X, removed Y) for the ``distilled`` or ``residual`` map; the Teacher stands in for a
    missing Base (S|T and T|S)."""
    other = "base" if "base" in roles else "teacher"
    return ("student", other) if key == "distilled" else (other, "student")


def panel_title(key: str, roles=("base",)) -> str:
    """The panel's title: the role's name, ``Distilled (S|B)``, ``Residual (B|S)`` or ``T − S``."""
    if key in ROLE_TITLES:
        return ROLE_TITLES[key]
    if key in UNICAM_KEYS:
        x, y = unicam_pair(key, roles)
        return f"{key.capitalize()} ({ROLE_LETTERS[x]}|{ROLE_LETTERS[y]})"
    return {"input": "Input", "difference": "T − S"}[key]
