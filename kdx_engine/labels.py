"""An image's true class from where it lies: its folder (``circle/img3.png``) or its file-name prefix
(``circle_003.png``), matched to the models' class names. No torch: the window uses it at start-up."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence


def is_placeholder_class_names(names: Sequence[str]) -> bool:
    """Whether ``names`` are the ``class_0, class_1, …`` a model without class names is given."""
    return bool(names) and all(name == f"class_{k}" for k, name in enumerate(names))


def labelling_class_names(names_of_models: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The class names images are labelled with, from the models' names in role order (Teacher first):
    the first model's real names (a sidecar's, a family preset's); placeholders only when no model has
    real names, so a Teacher without names beside a Student with them labels by the Student's."""
    names = [tuple(n) for n in names_of_models]
    return next((n for n in names if n and not is_placeholder_class_names(n)), names[0] if names else ())


def class_name_key(name: str) -> str:
    """How folder names are matched to class names: case, ``_``/``-`` and extra spaces ignored."""
    return " ".join(re.sub(r"[_\-]+", " ", name).casefold().split())


def label_hints(path: Path | None) -> tuple[str, ...]:
    """Names that may be the image's class: its folder and its file-name prefix."""
    if path is None:
        return ()
    path = Path(path)
    hints = [path.parent.name] if path.parent.name else []
    prefix = re.split(r"[_\-\s\d.]", path.stem, maxsplit=1)[0]
    if prefix:
        hints.append(prefix)
    return tuple(hints)


def class_index(hints: Sequence[str], class_names: Sequence[str]) -> int | None:
    """The first hint that names a class (exactly, else by ``class_name_key``), as its index."""
    if not class_names:
        return None
    exact = {name: i for i, name in enumerate(class_names)}
    loose = {class_name_key(name): i for i, name in reversed(list(enumerate(class_names)))}
    for hint in hints:
        if hint in exact:
            return exact[hint]
        if class_name_key(hint) in loose:
            return loose[class_name_key(hint)]
    return None
