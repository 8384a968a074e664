"""``zoo.json``: what the zoo holds, how each model was trained, and its accuracy at build time."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from kdx_engine.atomic_files import atomic_write_text
from kdx_engine.data.synthetic import SyntheticConfig

ZOO_FORMAT = "kdx-zoo/1"
ZOO_MANIFEST = "zoo.json"


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: its role (``teacher``, ``base``, ``student``, ``vam-student``,
    ``vam-student-folded``, ``kdexplainer``), files by format (paths relative to the zoo folder), the
    accuracy on the test slice measured at build time, and checkpoints by epoch."""

    name: str
    role: str
    architecture: str
    description: str
    files: dict[str, str]
    test_accuracy: float
    training: dict = field(default_factory=dict)
    checkpoints: dict[int, str] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The main file: the state_dict."""
        return self.files["state_dict"]

    def to_json(self) -> dict:
        return {"role": self.role, "file": self.file, "architecture": self.architecture, "description": self.description,
                "files": self.files, "test_accuracy": self.test_accuracy, "training": self.training,
                "checkpoints": {str(k): v for k, v in self.checkpoints.items()}}

    @classmethod
    def from_json(cls, name: str, data: dict) -> "ZooModel":
        return cls(name, data["role"], data["architecture"], data.get("description", ""),
                   dict(data["files"]), float(data["test_accuracy"]), dict(data.get("training", {})),
                   {int(k): v for k, v in data.get("checkpoints", {}).items()})


@dataclass(frozen=True)
class ZooManifest:
    """The whole zoo: the data it was trained on (regenerated from ``data``), the test slice, models."""

    data: SyntheticConfig
    split_sizes: dict[str, int]
    test_slice: int
    models: dict[str, ZooModel]
    build: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format": ZOO_FORMAT, "data": self.data.to_json(), "split_sizes": self.split_sizes,
                "test_slice": {"split": "test", "n": self.test_slice},
                "models": {name: m.to_json() for name, m in self.models.items()}, "build": self.build}

    @classmethod
    def from_json(cls, data: dict) -> "ZooManifest":
        if data.get("format") != ZOO_FORMAT:
            raise ValueError(f"not a KDX zoo manifest (format {data.get('format')!r}, expected {ZOO_FORMAT})")
        return cls(SyntheticConfig.from_json(data["data"]), dict(data["split_sizes"]),
                   int(data["test_slice"]["n"]),
                   {name: ZooModel.from_json(name, m) for name, m in data["models"].items()},
                   dict(data.get("build", {})))


def read_zoo(folder: str | os.PathLike) -> ZooManifest:
    """The manifest of the zoo in ``folder`` (``folder/zoo.json``)."""
    path = Path(folder) / ZOO_MANIFEST
    try:
        return ZooManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable zoo manifest ({exc})") from exc


def write_zoo(folder: str | os.PathLike, manifest: ZooManifest) -> Path:
    path = Path(folder) / ZOO_MANIFEST
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=1) + "\n")
    return path
