"""Typed preprocessing config of a model, read from and written to ``<model>.kdx.json``."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_files import atomic_write_text
from ..file_reading import SIDECAR_LIMIT, SpecialFileError, read_limited_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)
SIDECAR_SUFFIX = ".kdx.json"
SIDECAR_VERSION = 1
MAX_INPUT_SIZE = 1536  # 28 MB of float32 per input image; the largest classifiers take 600–1024 px
MAX_RESIZE = 2048  # 50 MB of float32 per resized image
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CHANNELS = (1, 3)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounded_integer(name: str, value, limit: int) -> int:
    if not _is_integer(value) or not 1 <= value <= limit:
        raise ValueError(f"'{name}' must be a positive integer (at most {limit}), got {value!r}")
    return int(value)


def _three_numbers(name: str, value, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3 \
            or not all(_is_number(v) and math.isfinite(v) for v in value):
        raise ValueError(f"'{name}' must be 3 finite numbers (one per RGB channel), got {value!r}")
    if positive and not all(v > 0 for v in value):
        raise ValueError(f"'{name}' must be 3 numbers above zero (it divides the pixels), got {list(value)!r}")
    return tuple(float(v) for v in value)


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
    distillation_temperature: float | None = None  # τ the model was distilled at, when known (optional)
    interpolation: str = "bilinear"  # of the resize: "bilinear", "bicubic" (timm's usual) or "nearest"
    channels: int = 3  # the model's input channels: 3 (RGB) or 1 (grey: images converted, mean[0]/std[0] used)

    def __post_init__(self) -> None:
        """Values checked however the config is made: a bad one is a ValueError naming the field."""
        object.__setattr__(self, "input_size", _bounded_integer("input_size", self.input_size, MAX_INPUT_SIZE))
        if self.resize is not None:
            object.__setattr__(self, "resize", _bounded_integer("resize", self.resize, MAX_RESIZE))
        object.__setattr__(self, "mean", _three_numbers("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _three_numbers("std", self.std, positive=True))
        if isinstance(self.class_names, (str, bytes)) or not all(isinstance(c, str) for c in self.class_names):
            raise ValueError(f"'class_names' must be a list of strings, got {self.class_names!r}"[:200])
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.architecture is not None and not isinstance(self.architecture, str):
            raise ValueError(f"'architecture' must be a string or null, got {self.architecture!r}")
        tau = self.distillation_temperature
        if tau is not None:
            if not _is_number(tau) or not math.isfinite(tau) or tau <= 0:
                raise ValueError(f"'distillation_temperature' must be a number above zero or null, got {tau!r}")
            object.__setattr__(self, "distillation_temperature", float(tau))
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"'interpolation' must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not _is_integer(self.channels) or self.channels not in CHANNELS:
            raise ValueError(f"'channels' must be 1 (grey) or 3 (RGB), got {self.channels!r}")

    @property
    def input_transform(self) -> tuple:
        """What turns an image into this model's input (resize, crop, interpolation, normalisation): two
        presets with the same one give the same input tensor from the same image."""
        return self.input_size, self.resize, self.mean, self.std, self.interpolation, self.channels

    def with_classes(self, class_names) -> "Preprocessing":
        return dataclasses.replace(self, class_names=tuple(class_names))

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["version"] = SIDECAR_VERSION
        data["mean"], data["std"] = list(self.mean), list(self.std)
        data["class_names"] = list(self.class_names)
        data.pop("source")
        if data["distillation_temperature"] is None:
            data.pop("distillation_temperature")  # optional: sidecars without it stay as they were
        if data["interpolation"] == "bilinear":
            data.pop("interpolation")  # the default: sidecars without it stay as they were
        if data["channels"] == 3:
            data.pop("channels")  # the default: sidecars without it stay as they were
        else:
            data["mean"], data["std"] = [self.mean[0]], [self.std[0]]
        return data

    @classmethod
    def from_json(cls, data: dict, source: str = "sidecar") -> "Preprocessing":
        """The config in a sidecar's JSON; a bad field is a ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"must hold a JSON object, not a {_json_kind(data)}")
        version = data.get("version", SIDECAR_VERSION)
        if not _is_integer(version):
            raise ValueError(f"'version' must be an integer, got {version!r}")
        if version > SIDECAR_VERSION:
            raise ValueError(f"sidecar version {version} is newer than this KDX understands ({SIDECAR_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = [k for k in data if k not in known and k != "version"]
        if unknown:  # a misspelt key would otherwise fall back to a default without a word
            raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:5]))}"[:200]
                             + f"; the keys are version, {', '.join(sorted(known))}")
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std"):
            if key in kwargs and not isinstance(kwargs[key], list):
                raise ValueError(f"'{key}' must be a list of 3 numbers, got {kwargs[key]!r}")
            if key in kwargs and kwargs.get("channels") == 1 and len(kwargs[key]) == 1:
                kwargs[key] = kwargs[key] * 3  # a grey model's one statistic, kept as the three the field holds
        if "class_names" in kwargs:
            names = kwargs["class_names"]
            if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
                raise ValueError(f"'class_names' must be a list of strings, got {names!r}"[:200])
            kwargs["class_names"] = tuple(names)
        return cls(**kwargs, source=source)


def _json_kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


IMAGENET_PRESET = Preprocessing(input_size=224, resize=256, source="imagenet-default")
CIFAR_PRESET = Preprocessing(input_size=32, resize=None, mean=CIFAR_MEAN, std=CIFAR_STD, source="cifar-preset")


CROP_FRACTION = 0.875  # torchvision's and timm's evaluation crop: resize to size/0.875, centre-crop size
MIN_CROPPED_SIZE = 96  # smaller inputs (CIFAR-like) are resized straight to the input size
OPTIONS_SOURCE = "command-line"


def crop_resize(size: int) -> int | None:
    """The resize that goes with an input size when none is given: size/0.875 from 96 px up, else none."""
    return int(size / CROP_FRACTION) if size >= MIN_CROPPED_SIZE else None


@dataclass(frozen=True)
class PreprocessingOptions:
    """Preprocessing given for models without a sidecar (the command line's ``--preprocessing FILE``,
    ``--input-size``, ``--resize``, ``--mean``, ``--std``): ``base`` (a sidecar-format config) replaces
    the model's preset or fallback, then each given field replaces that field. ``resize`` 0 means none;
    an input size without a resize takes ``crop_resize``'s."""

    base: Preprocessing | None = None
    input_size: int | None = None
    resize: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        self.apply(self.base or Preprocessing())  # a bad value fails here, before any model is loaded

    @property
    def sets_size(self) -> bool:
        return self.base is not None or self.input_size is not None

    @property
    def given(self) -> bool:
        return self.sets_size or any(v is not None for v in (self.resize, self.mean, self.std))

    def apply(self, config: Preprocessing) -> Preprocessing:
        """``config`` (a model's preset or fallback) with these options put over it."""
        config = self.base or config
        changes: dict = {"source": OPTIONS_SOURCE}
        if self.input_size is not None:
            changes.update(input_size=self.input_size, resize=crop_resize(self.input_size))
        if self.resize is not None:
            changes["resize"] = self.resize or None
        if self.mean is not None:
            changes["mean"] = self.mean
        if self.std is not None:
            changes["std"] = self.std
        return dataclasses.replace(config, **changes)


def describe_geometry(pre: Preprocessing) -> str:
    """The resize and crop, e.g. ``resize 36, crop 32`` or ``resize to 32×32``."""
    if pre.resize:
        return f"resize {pre.resize}, crop {pre.input_size}"
    return f"resize to {pre.input_size}×{pre.input_size}"


def transform_difference(pre: Preprocessing, reference: Preprocessing) -> tuple[list[str], list[str]]:
    """What differs between two models' input transforms (``input_transform``: geometry, interpolation,
    channels, mean, std; compared exactly), as (``pre``'s parts, ``reference``'s parts); empty lists when
    the same image gives both the same input."""
    mine, theirs = [], []
    if (pre.input_size, pre.resize) != (reference.input_size, reference.resize):
        mine.append(describe_geometry(pre))
        theirs.append(describe_geometry(reference))
    for name in ("interpolation", "channels"):
        if getattr(pre, name) != getattr(reference, name):
            mine.append(f"{name} {getattr(pre, name)}")
            theirs.append(f"{name} {getattr(reference, name)}")
    for name in ("mean", "std"):
        a, b = getattr(pre, name), getattr(reference, name)
        if a != b:
            mine.append(f"{name} {', '.join(f'{v:g}' for v in a)}")
            theirs.append(f"{name} {', '.join(f'{v:g}' for v in b)}")
    return mine, theirs


def preprocessing_difference(pre: Preprocessing, reference: Preprocessing, reference_name: str = "Teacher") -> str | None:
    """"preprocesses differently from the Teacher: … vs …", or None when the transforms are the same."""
    mine, theirs = transform_difference(pre, reference)
    if not mine:
        return None
    return f"preprocesses differently from the {reference_name}: {'; '.join(mine)} vs {'; '.join(theirs)}"


def sidecar_path(model_path: str | os.PathLike) -> Path:
    return Path(str(model_path) + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | os.PathLike) -> Preprocessing | None:
    """The sidecar's config, or None when there is no sidecar; a bad sidecar raises ValueError."""
    path = sidecar_path(model_path)
    if not os.path.lexists(path):
        return None
    return read_preprocessing_file(path)


def read_preprocessing_file(path: str | os.PathLike, source: str = "sidecar") -> Preprocessing:
    """A sidecar-format JSON file's config; ValueError naming the file and the bad key."""
    path = Path(path)
    try:
        data = json.loads(read_limited_text(path, SIDECAR_LIMIT, "preprocessing sidecar"))
    except SpecialFileError as exc:
        raise ValueError(f"{exc}: not a usable preprocessing sidecar") from exc
    except RecursionError as exc:
        raise ValueError(f"{path.name}: unreadable preprocessing sidecar (JSON nested too deeply)") from exc
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path.name}: unreadable preprocessing sidecar ({exc})") from exc
    try:
        return Preprocessing.from_json(data, source=source)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path.name}: bad preprocessing sidecar: {exc}") from exc


def write_sidecar(model_path: str | os.PathLike, config: Preprocessing) -> Path:
    """Write the sidecar atomically (temporary file, then rename)."""
    path = sidecar_path(model_path)
    atomic_write_text(path, json.dumps(config.to_json(), indent=2) + "\n")
    return path
