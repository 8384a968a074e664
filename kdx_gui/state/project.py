"""The project file (``.kdx``): versioned JSON holding the models, images and view settings.

Paths are stored relative to the project file when they lie beside or below it, so a project folder
can move as a whole. A file that is not JSON, not a KDX project, or from a newer KDX is refused with a
message that says which. Writes are atomic (temporary file, then rename).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from kdx_gui.state.session import ROLES, ViewSettings
from kdx_engine.file_reading import PROJECT_LIMIT, SpecialFileError, read_limited_text

PROJECT_FORMAT = "kdx-project"
PROJECT_VERSION = 1
PROJECT_SUFFIX = ".kdx"


class ProjectError(ValueError):
    """A project file that cannot be opened; the message names the file and the problem."""


@dataclass
class Project:
    models: dict[str, dict] = field(default_factory=dict)  # role → {"path", "target_layer"}
    images: list[str] = field(default_factory=list)
    current: int = -1
    view: ViewSettings = field(default_factory=ViewSettings)
    dataset_folder: str | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)


def _stored(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)


def _resolved(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    candidate = Path(path)
    return str(candidate if candidate.is_absolute() else (base / candidate).resolve())


def project_json(project: Project, project_path: str | os.PathLike) -> dict:
    base = Path(project_path).resolve().parent
    view = project.view.to_json()
    view["reference_folder"] = _stored(view["reference_folder"], base)
    return {
        "format": PROJECT_FORMAT,
        "version": PROJECT_VERSION,
        "models": {role: {"path": _stored(entry["path"], base), "target_layer": entry.get("target_layer")}
                   for role, entry in project.models.items()},
        "images": [_stored(p, base) for p in project.images],
        "current": project.current,
        "view": view,
        "dataset_folder": _stored(project.dataset_folder, base),
        "checkpoints": {name: _stored(p, base) for name, p in project.checkpoints.items()},
    }


def save_project(project: Project, path: str | os.PathLike) -> Path:
    path = Path(path)
    from kdx_engine.atomic_files import atomic_write_text

    atomic_write_text(path, json.dumps(project_json(project, path), indent=2) + "\n")
    return path


def load_project(path: str | os.PathLike) -> Project:
    path = Path(path)
    try:
        data = json.loads(read_limited_text(path, PROJECT_LIMIT, "project file"))
    except SpecialFileError as exc:
        raise ProjectError(str(exc)) from exc
    except RecursionError as exc:
        raise ProjectError(f"{path.name}: not a KDX project (JSON nested more deeply than Python can read)") from exc
    except OSError as exc:
        raise ProjectError(f"{path.name}: cannot read the project file ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProjectError(f"{path.name}: not a KDX project (corrupt or not JSON: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise ProjectError(f"{path.name}: not a KDX project (no \"format\": \"{PROJECT_FORMAT}\" entry)")
    version = data.get("version")
    if not isinstance(version, int):
        raise ProjectError(f"{path.name}: project has no valid version number")
    if version > PROJECT_VERSION:
        raise ProjectError(f"{path.name}: saved by a newer KDX (project version {version}); this KDX reads "
                           f"versions up to {PROJECT_VERSION}. Update KDX to open it")
    try:
        return _project_from(data, path.resolve().parent)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ProjectError(f"{path.name}: damaged project file ({exc})") from exc


def _project_from(data: dict, base: Path) -> Project:
    models = {}
    for role, entry in (data.get("models") or {}).items():
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}")
        models[role] = {"path": _resolved(str(entry["path"]), base), "target_layer": entry.get("target_layer")}
    view = ViewSettings.from_json(data.get("view") or {})
    if view.reference_folder:
        view = dataclasses.replace(view, reference_folder=_resolved(view.reference_folder, base))
    return Project(
        models=models,
        images=[_resolved(str(p), base) for p in data.get("images") or []],
        current=int(data.get("current", -1)),
        view=view,
        dataset_folder=_resolved(data.get("dataset_folder"), base),
        checkpoints={str(k): _resolved(str(v), base) for k, v in (data.get("checkpoints") or {}).items()},
    )
