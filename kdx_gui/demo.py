"""Finding the bundled demo: the zoo's models (``resources/models``) and sample images
(``resources/samples``). ``zoo.json`` says which file plays which role; without it, file names do."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kdx_engine import bundled
from kdx_gui.state.session import ROLES

RESOURCES = bundled.RESOURCES
STATE_DICT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
ROLE_WORDS = {"teacher": ("teacher",), "student": ("kd_student", "student_kd", "distilled", "student"),
              "base": ("base",)}
EXTRA_WORDS = ("vam", "kdexplainer", "hme")
MIN_DATASET_IMAGES = 32  # what dataset metrics need


@dataclass
class Demo:
    models: dict[str, str]
    samples: list[str]
    checkpoints: dict[str, str] = field(default_factory=dict)  # VAM student, KDExplainer
    dataset: str | None = None  # a class_name/image folder of n ≥ 32 for dataset metrics, when bundled
    sample_count: int = 0


def find_demo(resources: Path = RESOURCES) -> Demo | str:
    """The demo, or why there is none (a one-line message for the window)."""
    models_dir, samples_dir = resources / "models", resources / "samples"
    if not models_dir.is_dir() or not any(models_dir.iterdir()):
        return f"the demo is not built ({_shown(models_dir)} is empty): run `kdx zoo build --out " \
               f"{_shown(models_dir)} --samples {_shown(samples_dir)}`, or drop your own " \
               "models on the slots and images on the gallery"
    zoo = models_dir / "zoo.json"
    models, checkpoints = _from_zoo(zoo, models_dir) if zoo.is_file() else ({}, {})
    if not models:
        models, checkpoints = _from_names(models_dir)
    if not models:
        return f"no Teacher/Student/Base files recognised in {_shown(models_dir)}"
    samples = [str(samples_dir)] if samples_dir.is_dir() else []
    dataset = next((str(p) for p in (resources / "dataset", samples_dir)
                    if _is_image_folder_tree(p) and _image_count(p) >= MIN_DATASET_IMAGES), None)
    return Demo(models, samples, checkpoints, dataset, _image_count(samples_dir) if samples else 0)


def _image_count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.png") if not p.name.endswith(".mask.png")) if folder.is_dir() else 0


def _shown(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _is_image_folder_tree(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def _from_zoo(zoo: Path, models_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Roles from zoo.json: any object with a ``role`` and a file (``file``/``path``/``state_dict``),
    or top-level ``teacher``/``student``/``base`` keys naming a file."""
    try:
        data = json.loads(zoo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, {}
    models: dict[str, str] = {}
    checkpoints: dict[str, str] = {}
    for entry in _objects(data):
        role = str(entry.get("role", "")).lower()
        file = next((entry[k] for k in ("file", "path", "state_dict", "weights") if isinstance(entry.get(k), str)),
                    None)
        if file is None or not (models_dir / file).is_file():
            continue
        if role in ROLES and role not in models:
            models[role] = str(models_dir / file)
        elif any(word in role for word in EXTRA_WORDS) and "folded" not in role:  # a folded VAM has no θ left
            checkpoints[Path(file).name] = str(models_dir / file)
    if isinstance(data, dict):
        for role in ROLES:
            value = data.get(role)
            if role not in models and isinstance(value, str) and (models_dir / value).is_file():
                models[role] = str(models_dir / value)
    return models, checkpoints


def _objects(data):
    if isinstance(data, dict):
        yield data
        for value in data.values():
            yield from _objects(value)
    elif isinstance(data, list):
        for value in data:
            yield from _objects(value)


def _from_names(models_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    files = sorted(p for p in models_dir.iterdir() if p.is_file() and p.name.endswith(STATE_DICT_SUFFIXES))
    models: dict[str, str] = {}
    checkpoints: dict[str, str] = {}
    for path in files:
        name = path.name.lower()
        if any(word in name for word in EXTRA_WORDS):
            checkpoints[path.name] = str(path)
            continue
        for role in ("teacher", "base", "student"):  # "base_student" is the Base
            if role not in models and any(word in name for word in ROLE_WORDS[role]):
                models[role] = str(path)
                break
    return models, checkpoints
