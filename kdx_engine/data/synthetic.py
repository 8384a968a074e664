"""Seeded shapes-on-texture image sets with exact object masks and a spurious background cue.

The bundled demo (PRODUCT §8) needs a task with a shortcut: each image shows one shape (its class)
in a random colour on a textured background whose hue tint is the *cue*. In the students' labelled
split the cue names the class with probability ``cue_agreement``; elsewhere it is drawn
independently of the class, so a model that learned the cue instead of the shape fails there.

Every image is drawn from its own generator keyed by (config seed, split name, image index), so a
split is deterministic, a smaller ``n`` gives a prefix of a larger one, and a re-cued split (the
same scenes with other cue labels) can be rebuilt without keeping anything in memory.
"""
from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kdx_engine.atomic_files import atomic_write_bytes, atomic_write_text
from kdx_engine.data.images import MASK_SUFFIX

SHAPES = ("circle", "square", "triangle", "cross", "star", "ring")
TEXTURES = ("noise", "stripes", "blobs")
SPLIT_FORMAT = "kdx-synthetic/1"

# Channel-mean bands as fractions of 255. The background never leaves its band and object colours
# never enter the gap around it, so no background pixel can equal the object colour.
_BACKGROUND_BAND = (0.38, 0.62)
_DARK_OBJECT_MAX_VALUE = 0.28     # HSV value of dark objects: channel mean <= value
_BRIGHT_OBJECT_MIN_VALUE = 0.95   # with saturation <= 0.3 the channel mean stays >= 0.76

# Shapes in units of the drawn radius, sized so every class covers about 2 r² (area is not a cue).
_CIRCLE_RADIUS = 0.798
_RING_RADII = (0.6, 1.0)
_EXTENT = {"circle": 0.8, "square": 1.0, "triangle": 1.241, "cross": 0.986, "star": 1.23,
           "ring": 1.0}

# Per-image random streams are tagged so that label blocks, scenes and shuffles never share one.
_SCENE_STREAM, _LABEL_STREAM, _SHUFFLE_STREAM = 0, 1, 2

DEMO_CUE_AGREEMENT = 0.95
DEMO_SPLIT_SIZES = {"train_labelled": 2000, "transfer": 3000, "teacher_train": 3000, "test": 1000}


def _regular_polygon(radius: float, count: int, start: float = np.pi / 2) -> np.ndarray:
    angles = start + 2 * np.pi * np.arange(count) / count
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star_polygon(outer: float, inner_ratio: float, points: int) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, outer * inner_ratio)
    angles = np.pi / 2 + np.pi * np.arange(2 * points) / points
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross_polygon(half_length: float, half_width: float) -> np.ndarray:
    a, w = half_length, half_width
    return np.array([(w, a), (w, w), (a, w), (a, -w), (w, -w), (w, -a), (-w, -a), (-w, -w),
                     (-a, -w), (-a, w), (-w, w), (-w, a)])


_POLYGONS = {
    "square": np.array([(0.707, 0.707), (0.707, -0.707), (-0.707, -0.707), (-0.707, 0.707)]),
    "triangle": _regular_polygon(1.241, 3),
    "cross": _cross_polygon(0.93, 0.3255),
    "star": _star_polygon(1.23, 0.45, 5),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """What the generator draws: image size, shape classes (in label order), seed and ranges."""

    size: int = 64
    classes: tuple[str, ...] = ("circle", "square", "triangle", "cross")
    seed: int = 0
    scale_range: tuple[float, float] = (0.16, 0.24)  # shape radius as a fraction of the size
    cue_strength: float = 0.25                        # how far the background tint leaves grey
    textures: tuple[str, ...] = TEXTURES

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "textures", tuple(self.textures))
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"classes must be 2 or more distinct names from {SHAPES}, "
                             f"got {self.classes!r}")
        if not self.textures or any(t not in TEXTURES for t in self.textures):
            raise ValueError(f"textures must be names from {TEXTURES}, got {self.textures!r}")
        if self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        low, high = self.scale_range
        if not 0.05 <= low <= high <= 0.3:
            raise ValueError(f"scale_range must satisfy 0.05 <= low <= high <= 0.3, "
                             f"got {self.scale_range}")
        if not 0.0 <= self.cue_strength <= 0.3:
            raise ValueError(f"cue_strength must be in [0, 0.3], got {self.cue_strength}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: Mapping) -> "SyntheticConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                      if k in known})


@dataclass(frozen=True)
class SyntheticSplit:
    """A generated split: images N×H×W×3 uint8, masks N×H×W bool, labels and cue labels (N,).

    ``cue_labels[i]`` is the class the background tint of image i points to, or -1 for none.
    ``cue_agreement`` is the requested agreement (None: cue independent of the class). ``source``
    names the generated split whose scenes a re-cued split reuses (None for a generated one).
    """

    config: SyntheticConfig
    name: str
    cue_agreement: float | None
    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    cue_labels: np.ndarray
    source: str | None = None

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def scene_name(self) -> str:
        """The split name whose per-image generators drew these scenes."""
        return self.source or self.name

    def measured_cue_agreement(self) -> float:
        """Share of images whose cue points to their own class."""
        return float(np.mean(self.cue_labels == self.labels)) if self.n else float("nan")


@dataclass(frozen=True)
class _Scene:
    label: int
    cue: int
    centre: tuple[float, float]
    radius: float
    angle: float
    colour: tuple[int, int, int]
    texture: np.ndarray  # H×W float in [0, 1]


def stable_split_hash(name: str) -> int:
    """A 64-bit hash of a split name that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def generate_split(config: SyntheticConfig, split: str, n: int,
                   cue_agreement: float | None = None, *, cue: bool = True) -> SyntheticSplit:
    """Draw ``n`` images of split ``split``; deterministic in (config, split, n, cue settings).

    The cue agrees with the class with probability ``cue_agreement`` (otherwise it points to one
    of the other classes uniformly); ``None`` draws it uniformly, independently of the class.
    ``cue=False`` leaves the background untinted grey texture and sets every cue label to -1.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if cue_agreement is not None and not 0.0 <= cue_agreement <= 1.0:
        raise ValueError(f"cue_agreement must be in [0, 1] or None, got {cue_agreement}")
    scenes = _scenes(config, split, n, cue_agreement if cue else None)
    if not cue:
        scenes = (dataclasses.replace(s, cue=-1) for s in scenes)
    return _render_split(config, split, None, cue_agreement if cue else None, n, scenes)


def cue_shuffled_split(source: SyntheticSplit, name: str = "test_cue_shuffled") -> SyntheticSplit:
    """The same scenes as ``source`` with its cue labels randomly permuted among the images."""
    rng = np.random.default_rng([source.config.seed, stable_split_hash(name), _SHUFFLE_STREAM])
    return recued_split(source, source.cue_labels[rng.permutation(source.n)], name, None)


def cue_aligned_split(source: SyntheticSplit, name: str = "test_cue_aligned") -> SyntheticSplit:
    """The same scenes as ``source`` with every cue pointing to the image's own class."""
    return recued_split(source, source.labels, name, 1.0)


def recued_split(source: SyntheticSplit, cue_labels: np.ndarray, name: str,
                 cue_agreement: float | None) -> SyntheticSplit:
    """Redraw ``source``'s scenes (objects, textures, colours unchanged) with new cue labels."""
    cue_labels = np.asarray(cue_labels, dtype=np.int64)
    if cue_labels.shape != (source.n,) or cue_labels.min(initial=-1) < -1 \
            or cue_labels.max(initial=-1) >= source.config.num_classes:
        raise ValueError(f"cue_labels must be {source.n} values in [-1, "
                         f"{source.config.num_classes - 1}]")
    scenes = _scenes(source.config, source.scene_name, source.n, None)
    scenes = (dataclasses.replace(s, cue=int(c)) for s, c in zip(scenes, cue_labels))
    return _render_split(source.config, name, source.scene_name, cue_agreement, source.n, scenes)


def demo_splits(config: SyntheticConfig = SyntheticConfig(),
                sizes: Mapping[str, int] | None = None) -> dict[str, SyntheticSplit]:
    """The demo's splits, by name.

    - ``train_labelled`` (2000): the students' labelled split, cue agrees with probability 0.95.
    - ``transfer`` (3000): unlabelled images for distillation (labels kept but not to be used),
      cue independent of the class.
    - ``teacher_train`` (3000): the Teacher's split; the cue is drawn independently of the class
      (not left out) so the Teacher sees the same tinted backgrounds it will be tested on.
    - ``test`` (1000): cue independent of the class.
    - ``test_cue_shuffled`` (same size as test): the test scenes with cue labels permuted.
    - ``test_cue_aligned`` (same size as test): the test scenes with every cue agreeing, so the
      cost of the shortcut is measured on identical objects.

    ``sizes`` overrides any of the four generated splits' sizes (e.g. for quick tests).
    """
    sizes = {**DEMO_SPLIT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(DEMO_SPLIT_SIZES)
    if unknown:
        raise ValueError(f"unknown demo splits {sorted(unknown)}; known: {sorted(DEMO_SPLIT_SIZES)}")
    agreement = {"train_labelled": DEMO_CUE_AGREEMENT}
    splits = {name: generate_split(config, name, sizes[name], agreement.get(name))
              for name in DEMO_SPLIT_SIZES}
    splits["test_cue_shuffled"] = cue_shuffled_split(splits["test"])
    splits["test_cue_aligned"] = cue_aligned_split(splits["test"])
    return splits


def write_image_folder(split: SyntheticSplit, class_names: Sequence[str] | None,
                       root: str | os.PathLike) -> Path:
    """Write ``root/<class>/<index:05d>.png`` (+ ``.mask.png``, 0/255) and ``root/split.json``.

    ``class_names`` names the folders in label order (None: the config's shape names). Every file
    is written atomically; ``split.json`` is written last, so its presence marks a complete tree.
    ``root`` must be missing or empty, so no stale image from another split can be left in a class.
    """
    names = list(split.config.classes if class_names is None else class_names)
    if len(names) != split.config.num_classes or len(set(names)) != len(names):
        raise ValueError(f"need {split.config.num_classes} distinct class names, got {names!r}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; write a synthetic split into a new folder")
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(split.n):
        relative = Path(names[int(split.labels[index])]) / f"{index:05d}.png"
        atomic_write_bytes(root / relative, _png_bytes(split.images[index]))
        mask = split.masks[index].astype(np.uint8) * 255
        atomic_write_bytes(root / relative.with_name(f"{index:05d}{MASK_SUFFIX}"), _png_bytes(mask))
        files.append(relative.as_posix())
    manifest = {
        "format": SPLIT_FORMAT,
        "split": split.name,
        "source": split.source,
        "n": split.n,
        "cue_agreement": split.cue_agreement,
        "measured_cue_agreement": split.measured_cue_agreement() if split.n else None,
        "config": split.config.to_json(),
        "class_names": names,
        "files": files,
        "labels": split.labels.tolist(),
        "cue_labels": split.cue_labels.tolist(),
    }
    atomic_write_text(root / "split.json", json.dumps(manifest, indent=1) + "\n")
    return root


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _scenes(config: SyntheticConfig, split: str, n: int,
            cue_agreement: float | None) -> Iterator[_Scene]:
    """The split's scenes one at a time (a texture each, so they are not all kept in memory)."""
    split_hash = stable_split_hash(split)
    labels = _balanced_labels(config, split_hash, n)
    grid = _pixel_grid(config.size)
    for i in range(n):
        rng = np.random.default_rng([config.seed, split_hash, _SCENE_STREAM, i])
        yield _draw_scene(rng, config, int(labels[i]), cue_agreement, grid)


def _balanced_labels(config: SyntheticConfig, split_hash: int, n: int) -> np.ndarray:
    """Labels in shuffled blocks of K, so every prefix is balanced to within one image."""
    k = config.num_classes
    blocks = [np.random.default_rng([config.seed, split_hash, _LABEL_STREAM, b]).permutation(k)
              for b in range(-(-n // k))]
    return np.concatenate(blocks)[:n] if blocks else np.zeros(0, dtype=np.int64)


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x right, y up) as two H×W arrays."""
    centres = np.arange(size, dtype=np.float32) + np.float32(0.5)
    return np.meshgrid(centres, size - centres)


def _draw_scene(rng: np.random.Generator, config: SyntheticConfig, label: int,
                cue_agreement: float | None, grid) -> _Scene:
    # A fixed number of draws for the cue comes first, so objects and textures never depend on
    # how the cue was chosen (that is what lets a re-cued split keep its scenes).
    k = config.num_classes
    agrees = rng.random() < (cue_agreement if cue_agreement is not None else 0.0)
    other = (label + 1 + int(rng.integers(k - 1))) % k
    uniform = int(rng.integers(k))
    cue = uniform if cue_agreement is None else (label if agrees else other)

    radius = rng.uniform(*config.scale_range) * config.size
    margin = radius * _EXTENT[config.classes[label]] + 1.0
    centre = (rng.uniform(margin, config.size - margin), rng.uniform(margin, config.size - margin))
    angle = rng.uniform(0.0, 2 * np.pi)
    colour = _object_colour(rng)
    texture = _texture(rng, config, grid)
    return _Scene(label, cue, centre, radius, angle, colour, texture)


def _object_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random hue, either dark (channel mean <= 71) or light (channel mean >= 193)."""
    hue = rng.random()
    if rng.random() < 0.5:
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 1.0), rng.uniform(0.08, _DARK_OBJECT_MAX_VALUE))
    else:
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.0, 0.3), rng.uniform(_BRIGHT_OBJECT_MIN_VALUE, 1.0))
    return tuple(int(round(c * 255)) for c in rgb)


def _texture(rng: np.random.Generator, config: SyntheticConfig, grid) -> np.ndarray:
    """A grey-level texture field in [0, 1]: smooth noise, stripes or Gaussian blobs."""
    x, y = grid
    size = config.size
    kind = config.textures[int(rng.integers(len(config.textures)))]
    if kind == "noise":
        cells = int(rng.integers(4, 10))
        field = _upsample_bilinear(rng.random((cells, cells)), size)
        field += 0.25 * rng.random((size, size))
    elif kind == "stripes":
        direction = rng.uniform(0.0, np.pi)
        cycles = rng.uniform(3.0, 9.0)
        phase = rng.uniform(0.0, 2 * np.pi)
        field = np.sin(2 * np.pi * cycles / size * (x * np.cos(direction) + y * np.sin(direction))
                       + phase)
    else:
        field = np.zeros((size, size))
        for _ in range(int(rng.integers(3, 8))):
            cx, cy = rng.uniform(0, size, 2)
            sigma = rng.uniform(0.06, 0.2) * size
            sign = 1.0 if rng.random() < 0.5 else -1.0
            field += sign * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    field = field.astype(np.float32)
    low, high = field.min(), field.max()
    return (field - low) / (high - low) if high > low else np.full_like(field, 0.5)


def _upsample_bilinear(cells: np.ndarray, size: int) -> np.ndarray:
    positions = (np.arange(size) + 0.5) / size * (cells.shape[0] - 1)
    lower = np.minimum(np.floor(positions).astype(int), cells.shape[0] - 2)
    frac = positions - lower
    rows = cells[lower] * (1 - frac)[:, None] + cells[lower + 1] * frac[:, None]
    return rows[:, lower] * (1 - frac)[None, :] + rows[:, lower + 1] * frac[None, :]


def _cue_tints(config: SyntheticConfig) -> np.ndarray:
    """K×3 zero-mean colour offsets, hues evenly spaced, so the tint leaves the channel mean alone."""
    hues = np.arange(config.num_classes) / config.num_classes
    rgb = np.array([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in hues])
    return config.cue_strength * (rgb - rgb.mean(axis=1, keepdims=True))


def _shape_mask(scene: _Scene, shape: str, grid) -> np.ndarray:
    x, y = grid
    dx, dy = (x - scene.centre[0]) / scene.radius, (y - scene.centre[1]) / scene.radius
    cos, sin = np.cos(scene.angle), np.sin(scene.angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    if shape == "circle":
        return u * u + v * v <= _CIRCLE_RADIUS ** 2
    if shape == "ring":
        rho2 = u * u + v * v
        return (rho2 >= _RING_RADII[0] ** 2) & (rho2 <= _RING_RADII[1] ** 2)
    return _inside_polygon(u, v, _POLYGONS[shape])


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: a point is inside when a ray to +u crosses the outline an odd number of times."""
    inside = np.zeros(u.shape, dtype=bool)
    closed = np.vstack([vertices, vertices[:1]]).tolist()
    for (u1, v1), (u2, v2) in zip(closed, closed[1:]):
        if v1 == v2:
            continue
        crosses = (v1 > v) != (v2 > v)
        inside ^= crosses & (u < u1 + (v - v1) * (u2 - u1) / (v2 - v1))
    return inside


def _render_split(config: SyntheticConfig, name: str, source: str | None,
                  cue_agreement: float | None, n: int, scenes: Iterator[_Scene]) -> SyntheticSplit:
    size = config.size
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    labels = np.empty(n, dtype=np.int64)
    cue_labels = np.empty(n, dtype=np.int64)
    grid = _pixel_grid(size)
    tints = _cue_tints(config).astype(np.float32)
    low, high = np.float32(_BACKGROUND_BAND[0]), np.float32(_BACKGROUND_BAND[1])
    for i, scene in enumerate(scenes):
        grey = (low + (high - low) * scene.texture)[..., None]
        background = grey + tints[scene.cue] if scene.cue >= 0 else np.repeat(grey, 3, axis=2)
        images[i] = np.rint(background * 255)
        masks[i] = _shape_mask(scene, config.classes[scene.label], grid)
        images[i][masks[i]] = scene.colour
        labels[i], cue_labels[i] = scene.label, scene.cue
    return SyntheticSplit(config, name, cue_agreement, images, masks, labels, cue_labels, source)
