"""Loading images (and their optional masks) as RGB arrays, and turning them into model inputs.

Every failure to read a file becomes an ``ImageError`` whose one-line message names the file, so a
batch can report it and go on. Conversions to RGB are recorded as notes on the loaded image:
transparency is composited on white (a cut-out object then looks as it does in a viewer, and a
model never sees the arbitrary colour hidden under transparent pixels); 16-bit grey is scaled to
8 bits (value / 257), not clipped.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.file_reading import IMAGE_LIMIT, SpecialFileError, read_limited

MASK_SUFFIX = ".mask.png"
IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga",
})
_EXIF_ORIENTATION_TAG = 0x0112
MAX_RESIZED_PIXELS = 64_000_000  # the resize before the centre crop; bounds time and memory
MAX_ASPECT_RATIO = 50.0
_MODE_NOTES = {
    "1": "converted from 1-bit black and white",
    "L": "converted from grey",
    "P": "converted from palette",
    "CMYK": "converted from CMYK",
    "YCbCr": "converted from YCbCr",
    "LAB": "converted from Lab",
    "HSV": "converted from HSV",
}


class ImageError(ValueError):
    """A file that cannot be used as an image; the message is ``"<file name>: <problem>"``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path.name}: {self.problem}")


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image as 8-bit RGB (H×W×3), what was done to get there, its mask and its file hash."""

    path: Path
    rgb: np.ndarray
    notes: tuple[str, ...] = ()
    mask: np.ndarray | None = None
    sha256: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @cached_property
    def pixel_sha256(self) -> str:
        """SHA-256 of the decoded pixels (and their shape): equal for a re-encoded or renamed copy, which
        gives every model the same input as the original."""
        digest = hashlib.sha256(repr(self.rgb.shape).encode())
        digest.update(np.ascontiguousarray(self.rgb).tobytes())
        return digest.hexdigest()


def mask_path_for(image_path: str | os.PathLike) -> Path:
    """Where the optional mask of an image lives: ``name.mask.png`` beside ``name.ext``."""
    path = Path(image_path)
    return path.with_name(path.stem + MASK_SUFFIX)


def is_mask_path(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(MASK_SUFFIX)


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file (and its mask, if one lies beside it); any failure is an ImageError."""
    path = Path(path)
    data = _read_file_bytes(path)
    image = image_from_bytes(data, path)
    mask_path = mask_path_for(path)
    if is_mask_path(path) or not mask_path.is_file():
        return image
    mask = load_mask(mask_path)
    if mask.shape != image.rgb.shape[:2]:
        raise ImageError(mask_path, f"mask is {mask.shape[1]}×{mask.shape[0]} but its image "
                                    f"{path.name} is {image.size[0]}×{image.size[1]}")
    return LoadedImage(image.path, image.rgb, image.notes, mask, image.sha256)


def image_from_bytes(data: bytes, path: str | os.PathLike) -> LoadedImage:
    """Decode an encoded image (e.g. pasted from the clipboard); ``path`` names it in messages."""
    path = Path(path)
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    with _decoded_pil_image(data, path) as (pil_image, notes):
        try:
            rgb, conversion_note = _rgb_and_conversion_note(pil_image)
        except (OSError, ValueError, MemoryError) as exc:
            raise ImageError(path, f"cannot convert {pil_image.mode} image to RGB ({exc})") from exc
    if conversion_note:
        notes.append(conversion_note)
    return LoadedImage(path, rgb, tuple(notes), None, hashlib.sha256(data).hexdigest())


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file as a boolean H×W array: any non-zero value (or colour) marks the object."""
    path = Path(path)
    with _decoded_pil_image(_read_file_bytes(path), path) as (pil_image, _):
        if pil_image.mode in ("LA", "PA"):
            values = np.asarray(pil_image)[..., 0]
        elif pil_image.mode in ("RGB", "RGBA", "RGBX"):
            values = np.asarray(pil_image)[..., :3]
        elif len(pil_image.getbands()) > 1:
            values = np.asarray(pil_image.convert("L"))
        else:
            values = np.asarray(pil_image)
    return values.any(axis=2) if values.ndim == 3 else values != 0


def load_images(paths: Iterable[str | os.PathLike]) -> tuple[list[LoadedImage], list[ImageError]]:
    """Load each file in turn; a bad file is reported and the rest of the batch goes on."""
    images: list[LoadedImage] = []
    errors: list[ImageError] = []
    for path in paths:
        try:
            images.append(load_image(path))
        except ImageError as exc:
            errors.append(exc)
    return images, errors


def collect_image_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files among ``paths`` in the order given, each folder searched recursively and its images
    naturally sorted, masks left out, a file given twice kept where it first appears.

    Inside folders only image extensions count and hidden entries (``.name``) are skipped; a file
    named directly is kept whatever its extension (or existence), so loading it reports why it is
    not an image instead of it vanishing silently.
    """
    found: dict[Path, None] = {}  # insertion-ordered set: figure rows follow the command line
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.update(dict.fromkeys(sorted(_image_files_under(path), key=natural_path_key)))
        elif not is_mask_path(path):
            found.setdefault(path)
    return list(found)


def natural_path_key(path: Path) -> tuple[str, str]:
    """Sort key that orders ``img2`` before ``img10``, case-insensitively, ties broken exactly.

    The natural order is encoded in one string (a dataset's listing sorts every path at once, so the key
    stays small): parts end with \x00; a number is \x01, its digit count and its digits (no leading
    zeros), so it sorts before text and by value; text is \x02 and the casefolded text."""
    encoded = []
    for part in path.parts:
        for token in re.split(r"(\d+)", part.casefold()):
            if token.isdigit():
                digits = str(int(token))
                encoded.append(f"\x01{chr(len(digits))}{digits}")
            elif token:
                encoded.append(f"\x02{token}")
        encoded.append("\x00")
    return "".join(encoded), str(path)


def _image_files_under(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith(".") or is_mask_path(name):
                continue
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(root) / name)
    return files


def _read_file_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image file")
    try:
        return read_limited(path, IMAGE_LIMIT, "image file")
    except SpecialFileError as exc:
        raise ImageError(path, exc.problem) from exc
    except FileNotFoundError as exc:
        raise ImageError(path, "file not found") from exc
    except PermissionError as exc:
        raise ImageError(path, "permission denied") from exc
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from exc


@contextmanager
def _decoded_pil_image(data: bytes, path: Path) -> Iterator[tuple[Image.Image, list[str]]]:
    """The fully decoded first frame, EXIF-oriented, with notes on both; any failure is an ImageError."""
    try:
        pil_image, notes = _open_checked(data, path)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"image too large, refused as a possible decompression bomb ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError(path, "not an image file (or a format Pillow cannot read)") from exc
    except MemoryError as exc:
        raise ImageError(path, "image too large to decode in memory") from exc
    except Exception as exc:  # Pillow's plugins raise many types (OSError, SyntaxError, struct.error…)
        raise ImageError(path, _decode_problem(exc)) from exc
    try:
        yield pil_image, notes
    finally:
        pil_image.close()


def _open_checked(data: bytes, path: Path) -> tuple[Image.Image, list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            pil_image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombWarning as exc:
            raise ImageError(path, f"image too large, refused as a possible decompression bomb ({exc})") from exc
    width, height = pil_image.size
    limit = Image.MAX_IMAGE_PIXELS
    # Checked again here because the warning filter above is process-wide and a thread may reset it.
    if limit and width * height > limit:
        raise ImageError(path, f"image too large ({width}×{height} pixels exceeds the "
                               f"decompression-bomb limit of {limit} pixels)")
    if width <= 0 or height <= 0:
        raise ImageError(path, f"zero-size image ({width}×{height})")
    pil_image.load()
    notes = []
    n_frames = getattr(pil_image, "n_frames", 1)
    if n_frames > 1:
        notes.append(f"first of {n_frames} frames")
    orientation = _exif_orientation(pil_image)
    if orientation in range(2, 9):
        oriented = ImageOps.exif_transpose(pil_image)
        pil_image.close()
        pil_image = oriented
        notes.append(f"EXIF orientation {orientation} applied")
    return pil_image, notes


def _decode_problem(exc: Exception) -> str:
    text = str(exc)
    if "truncated" in text.lower():
        return "truncated image file"
    return f"unreadable image file ({type(exc).__name__}: {text})" if text else \
        f"unreadable image file ({type(exc).__name__})"


def _exif_orientation(pil_image: Image.Image) -> int:
    try:
        return int(pil_image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block only loses the note, never the image
        return 1


def _rgb_and_conversion_note(pil_image: Image.Image) -> tuple[np.ndarray, str | None]:
    """8-bit RGB pixels of a decoded PIL image, and a note on the conversion made (None for RGB)."""
    mode = pil_image.mode
    if mode == "RGB":
        return np.array(pil_image, dtype=np.uint8), None
    if mode.startswith("I") or mode.startswith("F"):
        return _high_depth_grey_to_rgb(pil_image)
    if mode == "P" and "transparency" in pil_image.info:
        return _composited_on_white(pil_image.convert("RGBA"), "PA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composited_on_white(pil_image.convert("RGBA"), mode)
    return np.array(pil_image.convert("RGB"), dtype=np.uint8), _MODE_NOTES.get(mode, f"converted from {mode}")


def _high_depth_grey_to_rgb(pil_image: Image.Image) -> tuple[np.ndarray, str]:
    values = np.asarray(pil_image).astype(np.float64)
    if pil_image.mode.startswith("F"):
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        note = f"converted from 32-bit float grey (stretched from [{low:g}, {high:g}])"
    else:
        scaled = np.clip(values, 0, 65535) / 257.0
        note = "converted from 16-bit grey" if pil_image.mode.startswith("I;16") \
            else "converted from 32-bit integer grey (read as 16-bit values)"
    grey = np.rint(scaled).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), note


def _composited_on_white(rgba_image: Image.Image, source_mode: str) -> tuple[np.ndarray, str]:
    rgba = np.asarray(rgba_image).astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    source = {"PA": "palette with transparency", "LA": "grey with alpha", "La": "grey with alpha"}
    name = source.get(source_mode, "RGBA")
    if np.all(alpha == 1.0):
        return rgba[..., :3].astype(np.uint8), f"converted from {name} (fully opaque, alpha dropped)"
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.rint(rgb).astype(np.uint8), f"converted from {name} (transparency composited on white)"


# --- model inputs ---------------------------------------------------------------------------


def to_tensor(image_rgb: np.ndarray | LoadedImage, preprocessing: Preprocessing) -> torch.Tensor:
    """The model input (3×S×S float32): resize, centre crop, scale to [0, 1], normalise. An image too
    elongated, or whose resize would be too large, is an ImageError (see ``check_resizable``)."""
    pixels = _resized_and_cropped(_checked_float_chw(image_rgb, preprocessing), preprocessing,
                                  preprocessing.interpolation, _name_of(image_rgb))
    return normalised(pixels, preprocessing)


GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as Pillow's convert("L")


def normalised(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Float pixel values 0…255 (…×3×H×W, channels third from last) scaled to [0, 1] and normalised
    with the preset's mean and std: the last step of every model input. A one-channel model's input is
    the grey (luma) image, …×1×H×W, normalised with the first mean and std."""
    if preprocessing.channels == 1:
        weights = torch.tensor(GREY_WEIGHTS, dtype=torch.float32).view(3, 1, 1)
        grey = (pixels * weights).sum(dim=-3, keepdim=True)
        return ((grey / 255.0 - preprocessing.mean[0]) / preprocessing.std[0]).contiguous()
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(3, 1, 1)
    return ((pixels / 255.0 - mean) / std).contiguous()


def stacked_inputs(images: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """N×S×S×3 uint8 images, already at the model's input size S, as normalised N×3×S×S inputs (no resize
    or crop applied)."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32)
    return normalised(pixels, preprocessing)


def to_batch(images: Sequence[np.ndarray | LoadedImage], preprocessing: Preprocessing) -> torch.Tensor:
    """Model inputs of several images stacked as N×3×S×S."""
    if not images:
        size = preprocessing.input_size
        return torch.empty((0, preprocessing.channels, size, size), dtype=torch.float32)
    rgbs = [image.rgb if isinstance(image, LoadedImage) else np.asarray(image) for image in images]
    size = preprocessing.input_size
    if all(rgb.shape == (size, size, 3) and rgb.dtype == np.uint8 for rgb in rgbs) \
            and resized_size(size, size, preprocessing) == (size, size):
        # Already the model's input size (no resize, the crop is the whole image): one conversion for the
        # batch, equal to to_tensor's per image (and far fewer small tensor ops than one chain per image).
        return stacked_inputs(np.stack(rgbs), preprocessing)
    pixels = [_resized_and_cropped(_checked_float_chw(image, preprocessing), preprocessing,
                                   preprocessing.interpolation, _name_of(image)) for image in images]
    return normalised(torch.stack(pixels), preprocessing)  # one normalisation for the batch: equal to to_tensor's


def display_image(image_rgb: np.ndarray | LoadedImage, preprocessing: Preprocessing) -> np.ndarray:
    """The resized and cropped 8-bit RGB (S×S×3) that lines up pixel for pixel with the model input."""
    pixels = _resized_and_cropped(_checked_float_chw(image_rgb, preprocessing), preprocessing,
                                  preprocessing.interpolation, _name_of(image_rgb))
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def transform_mask(mask: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """The same resize and crop applied to a boolean H×W mask (nearest neighbour), S×S bool."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be H×W, got shape {mask.shape}")
    check_resizable(mask.shape, preprocessing, "mask")
    values = torch.from_numpy(mask.astype(np.float32))[None]
    return (_resized_and_cropped(values, preprocessing, "nearest-exact", "mask") > 0.5).numpy()[0]


def _name_of(image) -> str | Path:
    return image.path if isinstance(image, LoadedImage) else "image"


def resized_size(height: int, width: int, preprocessing: Preprocessing) -> tuple[int, int]:
    """(height, width) after the resize step, before the centre crop."""
    size = preprocessing.input_size
    if preprocessing.resize is None:
        return size, size
    short, long = sorted((height, width))
    new_long = int(preprocessing.resize * long / short)
    return (preprocessing.resize, new_long) if height <= width else (new_long, preprocessing.resize)


def check_resizable(shape: Sequence[int], preprocessing: Preprocessing, name: str | os.PathLike = "image") -> None:
    """Refuse (ImageError naming ``name``) an image of ``shape`` (H×W…) that is empty, more elongated
    than ``MAX_ASPECT_RATIO``, or whose resize would exceed ``MAX_RESIZED_PIXELS``: checked before any
    pixel is allocated."""
    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise ImageError(name, f"zero-size image ({width}×{height})")
    ratio = max(height, width) / min(height, width)
    target = resized_size(height, width, preprocessing)
    pixels = target[0] * target[1]
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(name, f"aspect ratio {_ratio(width, height)} ({width}×{height}) exceeds "
                               f"{MAX_ASPECT_RATIO:g}:1; the resize would need {pixels:,} pixels; "
                               "crop or pad the image first")
    if pixels > MAX_RESIZED_PIXELS:
        raise ImageError(name, f"the resize of this {width}×{height} image would need {pixels:,} pixels "
                               f"(limit {MAX_RESIZED_PIXELS:,}); crop or downscale the image first")


def _ratio(width: int, height: int) -> str:
    text = lambda r: f"{r:.1f}".rstrip("0").rstrip(".")  # noqa: E731
    return f"{text(width / height)}:1" if width >= height else f"1:{text(height / width)}"


def _checked_float_chw(image: np.ndarray | LoadedImage, preprocessing: Preprocessing) -> torch.Tensor:
    """The image as float C×H×W, after ``check_resizable`` (nothing large is allocated for a refused one)."""
    rgb = image.rgb if isinstance(image, LoadedImage) else np.asarray(image)
    if rgb.ndim >= 2:
        check_resizable(rgb.shape, preprocessing, _name_of(image))
    return _rgb_as_float_chw(image)


def _rgb_as_float_chw(image: np.ndarray | LoadedImage) -> torch.Tensor:
    rgb = image.rgb if isinstance(image, LoadedImage) else np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB array, got {rgb.dtype} of shape {rgb.shape}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32)


def _resized_and_cropped(chw: torch.Tensor, preprocessing: Preprocessing, mode: str,
                         name: str | os.PathLike = "image") -> torch.Tensor:
    """Resize (shorter side to ``resize``, or straight to S×S) then centre-crop S×S, as torchvision does."""
    size = preprocessing.input_size
    height, width = chw.shape[-2:]
    check_resizable((height, width), preprocessing, name)
    target = resized_size(height, width, preprocessing)
    if target != (height, width):
        antialias = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
        chw = F.interpolate(chw[None], size=target, mode=mode, **antialias)[0]
        if mode == "bicubic":  # bicubic overshoots; 8-bit resizers (PIL, torchvision) clip to the pixel range
            chw = chw.clamp(0, 255)
    return _centre_crop(chw, size)


def _centre_crop(chw: torch.Tensor, size: int) -> torch.Tensor:
    height, width = chw.shape[-2:]
    if height < size or width < size:  # torchvision pads a too-small image with zeros
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        chw = F.pad(chw, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        height, width = chw.shape[-2:]
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return chw[:, top:top + size, left:left + size]
