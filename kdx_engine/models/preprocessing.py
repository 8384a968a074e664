"""Typed preprocessing config of a model, read from and written to ``<model>.kdx.json``."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_files import atomic_write_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)
SIDECAR_SUFFIX = ".kdx.json"
SIDECAR_VERSION = 1


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input: resize (shorter side), centre crop, normalise."""

    input_size: int = 224
    resize: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: tuple[str, ...] = ()
    architecture: str | None = None
    source: str = "imagenet-default"

    def with_classes(self, class_names) -> "Preprocessing":
        return dataclasses.replace(self, class_names=tuple(class_names))

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["version"] = SIDECAR_VERSION
        data["mean"], data["std"] = list(self.mean), list(self.std)
        data["class_names"] = list(self.class_names)
        data.pop("source")
        return data

    @classmethod
    def from_json(cls, data: dict, source: str = "sidecar") -> "Preprocessing":
        version = data.get("version", SIDECAR_VERSION)
        if version > SIDECAR_VERSION:
            raise ValueError(f"sidecar version {version} is newer than this KDX understands ({SIDECAR_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std"):
            if key in kwargs:
                if len(kwargs[key]) != 3:
                    raise ValueError(f"sidecar '{key}' must have 3 values, got {kwargs[key]!r}")
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        if "class_names" in kwargs:
            kwargs["class_names"] = tuple(str(c) for c in kwargs["class_names"])
        return cls(**kwargs, source=source)


IMAGENET_PRESET = Preprocessing(input_size=224, resize=256, source="imagenet-default")
CIFAR_PRESET = Preprocessing(input_size=32, resize=None, mean=CIFAR_MEAN, std=CIFAR_STD, source="cifar-preset")


def sidecar_path(model_path: str | os.PathLike) -> Path:
    return Path(str(model_path) + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | os.PathLike) -> Preprocessing | None:
    """The sidecar's config, or None when there is no sidecar; a bad sidecar raises ValueError."""
    path = sidecar_path(model_path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Preprocessing.from_json(data)
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path.name}: unreadable preprocessing sidecar ({exc})") from exc


def write_sidecar(model_path: str | os.PathLike, config: Preprocessing) -> Path:
    """Write the sidecar atomically (temporary file, then rename)."""
    path = sidecar_path(model_path)
    atomic_write_text(path, json.dumps(config.to_json(), indent=2) + "\n")
    return path
