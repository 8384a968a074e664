"""Load a model file of any supported PyTorch format into a backend, safely.

Files are read by ``kdx_engine.checkpoints``: ``torch.load`` always runs with ``weights_only=True``
(``argparse.Namespace`` allowed, nothing else); a full pickled module is refused unless the caller
passes ``trust_pickle=True``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import logging
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..messages import first_line, reader_problem
from ..checkpoints import (  # noqa: F401 - UntrustedPickleError and extract_state_dict are re-exported
    ArchitectureError, ModelLoadError, UntrustedPickleError, extract_state_dict, find_module, kind_of, read_checkpoint,
    roles_in_checkpoint,
)
from .backend import ModelBackend, ModelInfo, model_label
from .export_program import load_export
from ..file_reading import special_kind
from .input_channels import input_channels
from .outputs import chosen_output, logits_of
from .preprocessing import OPTIONS_SOURCE, Preprocessing, PreprocessingOptions, read_sidecar, sidecar_path
from .preprocessing import crop_resize as _crop_resize
from .probabilities import (FROM_LOG, FROM_OUTPUT, FROM_SOFTMAX_INPUT, LOG_PROBABILITIES, LOGITS,
                            LOGITS_OUTPUT, PROBABILITIES, OutputKind, SoftmaxCalls, probe_inputs, values_kind)
from .architecture_hints import architecture_hints
from .huggingface import huggingface_problem
from .architecture_hints import registered_names as registered_hint_names
from .registry import (
    Architecture, architecture_difference, architecture_match, closest_architectures, fingerprint,
    get_architecture, registered_architectures, state_dict_size,
)
from .script_backend import ScriptModuleBackend, _forward_graph, final_softmax
from .torch_backend import TorchModuleBackend

FALLBACK_PRESET = Preprocessing(input_size=224, resize=256, source="imagenet-fallback")
FALLBACK_NOTE = ("no .kdx.json sidecar and no family preset: ImageNet preset used ({geometry}, ImageNet mean/std), "
                 "as torchvision's classifiers; set the preprocessing if the model was trained otherwise")
CROP_FRACTION = 0.875  # torchvision's and timm's evaluation crop: resize to size/0.875, centre-crop size
MIN_CROPPED_SIZE = 96  # smaller inputs (CIFAR-like) are resized straight to the input size
COMMON_SIZES = (32, 64, 96, 128, 224, 256, 299, 384)  # tried in turn when the fallback size fails
MAX_CAUSE = 300  # characters of a model's own error kept in a message
ONNX_ROUTES = ("onnxruntime", "onnx2torch")
MAX_DESCRIBED_PICKLE = 16 * 1024 * 1024
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
STATE_DICT = "state_dict"  # format of a torch.save checkpoint of weights (the architecture from the registry)
PICKLED_MODULE = "pickled module"  # format of a full pickled module, loaded only when the file is trusted
IMAGE_HINT = "(drop images on the gallery)"
FORMAT_LABELS = {STATE_DICT: "PyTorch checkpoint", "torchscript": "TorchScript file", "safetensors": "safetensors file"}


class NonFiniteLogitsError(ValueError):
    """A model gave NaN or inf logits: no class can be chosen from them."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """One of ``onnx``, ``torchscript``, ``torch_export``, ``safetensors``, ``state_dict`` (a ``torch.save``
    checkpoint; a loaded one that held a full module, trusted, is reported as ``PICKLED_MODULE``)."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("serialized_exported_program" in n or n.endswith("archive_format") for n in names):
            return "torch_export"
        if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
    return STATE_DICT


def models_in_file(path) -> list[str]:
    """The models a file holds beside each other, as ``load_model``'s ``which`` names them: ``["student",
    "teacher"]`` for an mdistiller checkpoint (``module.student.`` and ``module.teacher.`` in one file), ``[]``
    for a file holding one model (any format) or none. Never raises and never runs code from the file (a
    pickle naming code gives ``[]``); the file is read once more by ``load_model``."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0 or detect_format(path) not in (STATE_DICT, "safetensors"):
            return []
        with quiet_torch():
            return roles_in_checkpoint(read_checkpoint(path))
    except Exception:  # unreadable, untrusted or not a checkpoint: load_model says why when it is loaded
        return []


def load_model(
    path,
    *,
    arch: str | None = None,
    which: str | None = None,
    trust_pickle: bool = False,
    preprocessing: Preprocessing | None = None,
    onnx_route: str = "onnxruntime",
    options: PreprocessingOptions | None = None,
) -> ModelBackend:
    """Load ``path`` into a backend. ``arch`` overrides architecture recognition; ``which`` picks
    ``"student"`` or ``"teacher"`` from a checkpoint holding both; ``trust_pickle`` allows a full
    pickled module (it runs code from the file). ``onnx_route``: ``"onnxruntime"`` (onnx-ad gradients)
    or ``"onnx2torch"`` (converted to PyTorch when logits match, else onnxruntime). ``options`` (the
    command line's preprocessing) apply when neither ``preprocessing`` nor a sidecar is given."""
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        problem = huggingface_problem(path) if path.is_dir() else None
        raise ModelLoadError(problem or f"{path.name}: is {kind}, not a model file")
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: no such model file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name}: file is empty")
    try:
        return _load_model_file(path, arch, which, trust_pickle, preprocessing, onnx_route, options)
    except UntrustedPickleError:
        raise
    except ModelLoadError as exc:
        image = _image_kind(path)  # asked only once the file failed: no model is ever refused for its first bytes
        if image is not None:
            raise ModelLoadError(f"{path.name}: is {image} image, not a model file {IMAGE_HINT}") from exc
        raise


def _load_model_file(path: Path, arch, which, trust_pickle, preprocessing, onnx_route, options) -> ModelBackend:
    """``load_model`` once the file is known to exist and not be empty."""
    fmt = detect_format(path)
    try:
        sidecar = read_sidecar(path)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if fmt == "onnx":
        return _load_onnx(path, preprocessing or sidecar, onnx_route, options)
    notes: list[str] = []
    given = preprocessing is not None or sidecar is not None  # the command line's options apply otherwise
    label = "torch.export program (.pt2)" if fmt == "torch_export" or path.suffix.lower() == ".pt2" \
        else FORMAT_LABELS.get(fmt, fmt + " file")
    architecture = None  # the registry's, fitted to the weights: its preset applies (state_dicts only)
    try:
        with quiet_torch():
            if fmt == "torchscript":
                module, arch_name = torch.jit.load(str(path), map_location="cpu"), None
            elif fmt == "torch_export":
                (module, fixed_size), arch_name = load_export(path, trust_pickle), None
                if fixed_size and not (preprocessing or sidecar):
                    preprocessing = _preset_of_size(fixed_size, path, "exported program")
                    notes.append(f"input size {fixed_size} read from the exported program")
            else:
                module, architecture = _load_weights(path, fmt, arch, which, trust_pickle, sidecar, notes)
                arch_name = architecture.name if architecture is not None else None
                if arch_name is None:  # a full module from a trusted pickle, not weights built into an architecture
                    fmt = PICKLED_MODULE
    except ModelLoadError:
        raise
    except Exception as exc:  # what torch's readers raise on corrupt bytes: many types, none of them ours
        kind = _plain_pickle_kind(path) if fmt == STATE_DICT else None
        if kind is not None:
            raise ModelLoadError(f"{path.name}: holds a Python {kind}, not a model or state_dict "
                                 "(a plain pickle, not a torch.save checkpoint)") from exc
        if isinstance(exc, pickle.UnpicklingError) and fmt != "torch_export":
            raise ModelLoadError(f"{path.name}: not a readable {label} (corrupt, or not a checkpoint)") from exc
        raise ModelLoadError(f"{path.name}: not a readable {label} ({reader_problem(exc)})") from exc
    check_finite_parameters(module, path.name)
    config = preprocessing or sidecar or (architecture.preset if architecture is not None else FALLBACK_PRESET)
    config, searchable = _with_options(config, options if not given else None)
    if config.channels == 3 and input_channels(module) == 1:  # 3 is also what a sidecar without the key says
        config = dataclasses.replace(config, channels=1)
        notes.append("one input channel (read from the first convolution): images are converted to grey (luma)")
    chosen: list[str] = []  # which part of a tuple or dict output holds the logits

    def run_one(x):
        logits, where = chosen_output(module.eval()(x))
        if where and not chosen:
            chosen.append(where)
        return logits

    config, first = _probe_sizes(run_one, config, path, notes, searchable)
    if chosen:
        notes.append(f"logits: {chosen[0]}")
    if config.source == FALLBACK_PRESET.source:
        notes.append(FALLBACK_NOTE.format(geometry=_geometry(config)))
    num_classes = int(first.shape[1])
    find = (lambda: _script_softmax(module)) if fmt == "torchscript" else (lambda: _eager_softmax(module, config))
    output = _output_kind(run_one, config, first, find, path)
    if not output.is_logits:
        notes.append(f"output: {output.describe()}")
    config = _with_class_names(config, num_classes, path)
    info = ModelInfo(
        path=str(path), format=fmt, backend="torchscript" if fmt == "torchscript" else "pytorch",
        architecture=arch_name or (config.architecture if config.source == "sidecar" else None),
        num_classes=num_classes, num_parameters=sum(p.numel() for p in module.parameters()),
        preprocessing=config, sha256=sha256_of(path), notes=tuple(notes), output=output,
        preprocessing_origin=_origin(config, path, notes),
    )
    if fmt == "torchscript":
        return ScriptModuleBackend(module, info)
    return TorchModuleBackend(module, info)


def _load_onnx(path: Path, config: Preprocessing | None, route: str, options=None) -> ModelBackend:
    """An ONNX file in onnxruntime (gradients through onnx-ad heads), or converted by onnx2torch when
    asked for and its logits match onnxruntime's; the route used is in ``info.backend`` and the notes."""
    from .onnx_backend import OnnxBackend
    from .onnx_graph import FLOAT_TYPES, OnnxGraph, OnnxGraphError, read_onnx

    if route not in ONNX_ROUTES:
        raise ValueError(f"unknown ONNX route {route!r}; use one of {', '.join(ONNX_ROUTES)}")
    notes: list[str] = []
    try:
        graph = OnnxGraph(read_onnx(path))
    except OnnxGraphError as exc:
        raise ModelLoadError(f"{path.name}: {exc}") from exc
    _check_finite_initializers(graph.model, path.name)
    searchable = False
    if config is None:
        config = FALLBACK_PRESET
        if graph.fixed_size:
            config = _preset_of_size(graph.fixed_size, path, "ONNX graph")
            notes.append(f"input size {graph.fixed_size} read from the ONNX graph")
        config, searchable = _with_options(config, options)
        searchable = searchable and not graph.fixed_size
    if graph.fixed_batch:
        notes.append(f"exported with a fixed batch of {graph.fixed_batch}: batches run in chunks of that size")
    if not graph.named_by_module:
        notes.append("no PyTorch module names in the file: layers are named by their graph tensors")
    info = ModelInfo(
        path=str(path), format="onnx", backend="onnxruntime",
        architecture=config.architecture if config.source == "sidecar" else None, num_classes=0,
        num_parameters=sum(int(np.prod(t.dims)) for t in graph.model.graph.initializer if t.data_type in FLOAT_TYPES),
        preprocessing=config, sha256=sha256_of(path), notes=(),
    )
    try:
        backend: ModelBackend = OnnxBackend(graph, info)
    except Exception as exc:  # onnxruntime refuses the graph: an unsupported op or a broken model
        raise ModelLoadError(f"{path.name}: onnxruntime cannot run this model ({first_line(exc)})") from exc
    config, logits = _probe_sizes(backend.logits, config, path, notes, searchable)
    if config.source == FALLBACK_PRESET.source:
        notes.append(FALLBACK_NOTE.format(geometry=_geometry(config)))
    if graph.final_softmax is not None:
        name, op = graph.final_softmax
        output = OutputKind(PROBABILITIES if op == "Softmax" else LOG_PROBABILITIES, FROM_SOFTMAX_INPUT,
                            f"node {name!r} ({op})")
    else:
        output = _output_kind(backend.logits, config, logits, lambda: None, path)
    if not output.is_logits:
        notes.append(f"output: {output.describe()}")
    config = _with_class_names(config, int(logits.shape[1]), path)
    notes.append(f"route: onnxruntime, gradients through onnx-ad {_version('onnx-ad')} heads")
    info = dataclasses.replace(info, num_classes=int(logits.shape[1]), preprocessing=config, notes=tuple(notes),
                               output=output, preprocessing_origin=_origin(config, path, notes))
    backend.info = info
    if route == "onnx2torch":
        from .onnx_torch import onnx2torch_backend

        upgraded, reason = onnx2torch_backend(backend)
        if upgraded is not None:
            return upgraded
        backend.info = dataclasses.replace(info, notes=(*info.notes, f"onnx2torch not used: {reason}"))
    return backend


def _geometry(config: Preprocessing) -> str:
    if config.resize:
        return f"resize {config.resize}, centre crop {config.input_size}"
    return f"resize to {config.input_size}×{config.input_size}"


def _preset_of_size(size: int, path: Path, where: str) -> Preprocessing:
    """The fallback preset at the input size a file fixes, refused when no preset can have that size."""
    resize = int(size / CROP_FRACTION) if size >= MIN_CROPPED_SIZE else None
    try:
        return dataclasses.replace(FALLBACK_PRESET, input_size=size, resize=resize)
    except ValueError as exc:
        raise ModelLoadError(f"{path.name}: the {where} fixes an input size of {size}; {exc}") from exc


def _probe(run_one, config: Preprocessing, path: Path) -> torch.Tensor:
    """The N×K output of a mean-grey image at the config's size; ModelLoadError with the model's own cause."""
    size = config.input_size
    try:
        with torch.no_grad():
            output = run_one(torch.zeros(1, getattr(config, "channels", 3), size, size))
    except Exception as exc:  # a model's own error (wrong input size, broken graph): report it, never crash
        raise ModelLoadError(f"{path.name}: model failed on a {size}×{size} input ({failure_cause(exc)})") from exc
    if output.dim() != 2:
        raise ModelLoadError(f"{path.name}: model output has shape {tuple(output.shape)}, expected N×classes")
    return output


def _with_options(config: Preprocessing, options: PreprocessingOptions | None) -> tuple[Preprocessing, bool]:
    """``config`` with the command line's options over it, and whether its input size is only the
    fallback's (so other sizes may be tried when it fails)."""
    searchable = config.source == FALLBACK_PRESET.source and config.input_size == FALLBACK_PRESET.input_size
    if options is None or not options.given:
        return config, searchable
    return options.apply(config), searchable and not options.sets_size


def _origin(config: Preprocessing, path: Path, notes: list[str]) -> str:
    """Where the preprocessing came from, in one line: what every command prints for a model without a
    sidecar, and what every output file records."""
    size = f"{config.input_size} px" + (f" (resize {config.resize})" if config.resize else "")
    if config.source == "sidecar":
        return f"sidecar {sidecar_path(path).name}"
    if config.source == OPTIONS_SOURCE:
        return f"no sidecar: preprocessing options given, {size}"
    if config.source == FALLBACK_PRESET.source:
        how = next((f", {note.split(' read from ')[0].replace('input size ', '')} px read from "
                    f"{note.split(' read from ')[1]}" for note in notes if " read from the " in note), "")
        if any("common sizes" in note for note in notes):
            how = ", the first common size it runs at"
        return f"no sidecar: ImageNet preset (mean/std), {size}{how}"
    if config.source == "family-preset" or config.architecture:
        return f"no sidecar: preset of {config.architecture or 'its family'}, {size}"
    return f"{config.source}, {size}"


def _probe_sizes(run_one, config: Preprocessing, path: Path, notes: list[str],
                 searchable: bool) -> tuple[Preprocessing, torch.Tensor]:
    """The config and its probe output; when the fallback's size fails (``searchable``), the first of the
    common sizes that runs (said in a note), else the fallback's failure with the sizes tried."""
    try:
        return config, _probe(run_one, config, path)
    except ModelLoadError as exc:
        if not searchable:
            raise
        failure = exc
    sizes = ", ".join(map(str, COMMON_SIZES))
    for size in COMMON_SIZES:
        if size == config.input_size:
            continue
        candidate = dataclasses.replace(config, input_size=size, resize=_crop_resize(size))
        try:
            output = _probe(run_one, candidate, path)
        except ModelLoadError:
            continue
        cause = str(failure).partition(": ")[2]
        notes.append(f"no input size known and {cause}; input size {size} used, the first of the common sizes "
                     f"({sizes}) the model runs at: set the size it was trained at if it is another")
        return candidate, output
    raise ModelLoadError(f"{failure}; it runs at none of the common sizes ({sizes}) either: set the input size "
                         "it was trained at (--input-size, or the window's Preprocessing…)") from failure


_CAUSE_LINE = re.compile(r"^\s*(?:[\w.]+(?:Error|Exception)):\s*(\S.*)$")
_HIDING_FIRST_LINES = ("The following operation failed in the TorchScript interpreter", "Traceback of TorchScript")


def failure_cause(exc: BaseException) -> str:
    """The underlying cause in a model's error, on one line: a TorchScript interpreter error's last
    ``…Error: cause`` line (its first line only says that the interpreter failed), else the first line;
    cut at ``MAX_CAUSE`` characters."""
    text = str(exc).strip()
    cause = first_line(exc)
    if text.startswith(_HIDING_FIRST_LINES):
        found = [m.group(1) for m in map(_CAUSE_LINE.match, text.splitlines()) if m]
        cause = found[-1].rstrip(".") if found else cause
    return cause if len(cause) <= MAX_CAUSE else cause[:MAX_CAUSE - 1] + "…"


def _output_kind(run_one, config: Preprocessing, first: torch.Tensor, find_softmax, path: Path) -> OutputKind:
    """Logits, or probabilities/log-probabilities when every probe image's row says so (``first`` is the
    mean-grey image's); then the final softmax's input when ``find_softmax()`` names one, else the log."""
    kind = values_kind(first)
    if kind == LOGITS:
        return LOGITS_OUTPUT
    for x in probe_inputs(config.input_size, config.mean, config.std, getattr(config, "channels", 3))[1:]:
        try:
            with torch.no_grad():
                output = run_one(x)
        except Exception as exc:  # a model's own error on a random image
            raise ModelLoadError(f"{path.name}: model failed on a random {config.input_size}×{config.input_size} "
                                 f"input ({failure_cause(exc)})") from exc
        if values_kind(output) != kind:
            return LOGITS_OUTPUT
    where = find_softmax()
    if where is not None:
        return OutputKind(kind, FROM_SOFTMAX_INPUT, where)
    return OutputKind(kind, FROM_LOG if kind == PROBABILITIES else FROM_OUTPUT)


def _eager_softmax(module, config: Preprocessing) -> str | None:
    """The softmax call whose result a module returns (seen while it runs), or None."""
    x = torch.zeros(1, getattr(config, "channels", 3), config.input_size, config.input_size)
    with torch.no_grad(), SoftmaxCalls() as calls:
        output = logits_of(module(x))
    found = calls.input_of(output)
    return f"{found[1]} call" if found is not None else None


def _script_softmax(module) -> str | None:
    found = final_softmax(module, _forward_graph(module)[1])
    return found[1] if found is not None else None


def _with_class_names(config: Preprocessing, num_classes: int, path: Path) -> Preprocessing:
    if config.class_names and len(config.class_names) != num_classes:
        source = f"its sidecar {sidecar_path(path).name}" if config.source == "sidecar" else "the preprocessing"
        raise ModelLoadError(
            f"{path.name}: {source} names {len(config.class_names)} classes but the model outputs {num_classes}")
    return config if config.class_names else config.with_classes(f"class_{k}" for k in range(num_classes))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@contextmanager
def quiet_torch():
    """While a file is tried: warnings captured (not printed) and torch's loggers silenced, so a
    refused file gives one line and nothing else on stderr."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "torch" or name.startswith("torch.")]
    loggers.append(logging.getLogger("torch"))
    saved = [(logger, logger.disabled) for logger in loggers]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for logger in loggers:
            logger.disabled = True
        try:
            yield
        finally:
            for logger, disabled in saved:
                logger.disabled = disabled


def check_finite_parameters(module: nn.Module, name: str) -> None:
    """Refuse a model whose parameters or buffers hold NaN or inf: it cannot give meaningful outputs."""
    tensors = ((key, tensor.detach().float().cpu().numpy()) for key, tensor in module.state_dict().items()
               if isinstance(tensor, torch.Tensor) and tensor.is_floating_point())
    _refuse_non_finite(tensors, name)


def _refuse_non_finite(named_arrays, name: str) -> None:
    """ModelLoadError naming the first tensor when any of the (name, array) pairs holds NaN or inf."""
    total = bad = 0
    first = None
    for key, values in named_arrays:
        total += values.size
        count = int(values.size - np.count_nonzero(np.isfinite(values)))
        if count:
            bad += count
            first = first or key
    if bad:
        raise ModelLoadError(f"{name}: {bad:,} of {total:,} parameters are NaN or inf (tensor {first!r}); "
                             "the model cannot give meaningful outputs")


def _check_finite_initializers(model, name: str) -> None:
    """The ONNX counterpart: initializers and Constant values of floating type."""
    from .onnx_graph import FLOAT_TYPES

    tensors = [(t.name, t) for t in model.graph.initializer if t.data_type in FLOAT_TYPES]
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t.data_type in FLOAT_TYPES:
                    tensors.append((node.output[0], attribute.t))
    _refuse_non_finite(((key, values) for key, values in ((k, _readable_array(t)) for k, t in tensors)
                        if values is not None), name)


def _readable_array(proto):
    """An ONNX tensor's values, or None when its data cannot be read (onnxruntime reports that later)."""
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(proto)
    except Exception:  # any decoding failure of the tensor's bytes
        return None


def check_finite_logits(logits: torch.Tensor, model, image_names: Sequence[str] | None = None) -> None:
    """Raise NonFiniteLogitsError naming the model (a backend, a path or a name) when any row of
    ``logits`` holds NaN or inf, so no target is chosen from them; ``image_names`` name the rows."""
    logits = torch.as_tensor(logits)
    rows = torch.isfinite(logits).reshape(logits.shape[0], -1).all(dim=1) if logits.dim() else torch.isfinite(logits)
    if bool(rows.all()):
        return
    name = model_label(model.info) if hasattr(model, "info") else Path(os.fspath(model)).name
    bad = (~rows).nonzero().flatten().tolist()
    shown = [image_names[i] if image_names and i < len(image_names) else f"#{i}" for i in bad[:3]]
    more = ", …" if len(bad) > 3 else ""
    raise NonFiniteLogitsError(f"{name or 'model'}: NaN or inf logits for {len(bad)} of {rows.numel()} image(s) "
                               f"({', '.join(map(str, shown))}{more}); no class can be chosen from them")


_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG"), (b"\xff\xd8\xff", "a JPEG"), (b"GIF8", "a GIF"),
                (b"BM", "a BMP"), (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"))


def _image_kind(path: Path) -> str | None:
    """``"a PNG"`` and the like when the file starts like an image (dropped on the model slot)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP"
    return next((kind for magic, kind in _IMAGE_MAGIC if head.startswith(magic)), None)


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused (nothing runs)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"global {module}.{name} refused")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent id refused")


def _plain_pickle_kind(path: Path) -> str | None:
    """What a plain (non-torch) pickle of plain data holds, e.g. ``list of 3 items``; None otherwise."""
    try:
        if path.stat().st_size > MAX_DESCRIBED_PICKLE:
            return None
        data = path.read_bytes()
        stream = io.BytesIO(data)
        obj = _NoGlobals(stream).load()
    except Exception:  # not a plain pickle of plain data: the reader's message stands
        return None
    if stream.tell() != len(data) or obj == _LEGACY_TORCH_MAGIC:
        return None  # more pickles follow: torch's legacy format, not a plain pickle
    return kind_of(obj)


def _load_weights(path, fmt, arch, which, trust_pickle, sidecar, notes) -> tuple[nn.Module, Architecture | None]:
    """A state_dict (any container) built into its architecture (returned, fitted to the weights), or a
    trusted full module (None for the architecture)."""
    obj = read_checkpoint(path, trust_pickle=trust_pickle, notes=notes)
    if isinstance(obj, nn.Module):
        notes.append("full pickled module loaded because the file was explicitly trusted")
        return obj, None
    container_module = find_module(obj)
    if container_module is not None:
        notes.append("full pickled module loaded because the file was explicitly trusted")
        return container_module, None
    state_dict = extract_state_dict(obj, which, notes, path.name)
    arch_name = arch or (sidecar.architecture if sidecar and sidecar.architecture else None)
    hints = architecture_hints(obj, path)
    try:
        architecture, num_classes = _choose_architecture(state_dict, arch_name, notes, path.name, hints)
    except ArchitectureError:
        problem = huggingface_problem(path.parent)  # the weights of a transformers folder
        if problem is not None:
            raise ModelLoadError(problem) from None
        raise
    module = architecture.build(num_classes)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path.name}: weights do not fit architecture {architecture.name} ({first_line(exc)})") from exc
    return module, architecture


def _choose_architecture(state_dict, arch_name, notes, name, hints=()) -> tuple[Architecture, int]:
    try:
        return _matching_architecture(state_dict, arch_name, notes, name, hints)
    except ModelLoadError as exc:  # an architecture refused the weights' shapes (e.g. a ViT's absurd input size)
        if str(exc).startswith(f"{name}: "):
            raise
        raise ModelLoadError(f"{name}: {exc}") from exc


def _matching_architecture(state_dict, arch_name, notes, name, hints=()) -> tuple[Architecture, int]:
    """The architecture named (checked against the weights) or recognised from them, hints from the file
    breaking ties; an ArchitectureError saying what differs from the closest registered ones otherwise."""
    registered = registered_architectures()
    hinted = [n for hint in hints for n in registered_hint_names(hint, registered)]
    if arch_name is not None:
        try:
            architecture = get_architecture(arch_name)
        except KeyError as exc:
            raise ModelLoadError(f"{name}: {exc.args[0]}") from exc
        match = architecture_match(architecture, state_dict)
        if match is None:
            raise ArchitectureError(_mismatch_message(name, architecture, state_dict, hinted))
        return match
    matches = fingerprint(state_dict)
    if not matches:
        closest = closest_architectures(state_dict, first=tuple(hinted))
        said = "; ".join(f"{h.name!r} ({h.source})" for h in hints)
        raise ArchitectureError(
            f"{name}: architecture not recognised from its {state_dict_size(state_dict)}"
            + (f"; the file names {said}" if said else "")
            + (". Closest registered: " + " | ".join(d.description for d in closest) if closest else ""))
    matches.sort(key=lambda m: m[0].name not in hinted)  # stable: the registry's order among equals
    if len(matches) > 1:
        notes.append("parameters also fit: " + ", ".join(a.name for a, _ in matches[1:]))
    chosen = matches[0][0].name
    notes.append(f"architecture recognised from parameter names and shapes: {chosen}")
    for hint in hints:
        agrees = chosen in registered_hint_names(hint, registered)
        notes.append(f"{hint.source} names {hint.name!r}" + ("" if agrees else f", but the weights are {chosen}'s"))
    return matches[0]


def _mismatch_message(name: str, architecture: Architecture, state_dict, hinted) -> str:
    """Why ``state_dict`` does not fit ``architecture``: what differs, and which registered architecture
    the weights do fit (or the closest ones)."""
    difference = architecture_difference(architecture, state_dict)
    text = f"{name}: parameter names/shapes do not match architecture {architecture.name} ({difference.description})"
    matches = fingerprint(state_dict)
    if matches:
        return text + "; the weights fit " + ", ".join(a.name for a, _ in matches)
    others = [d for d in closest_architectures(state_dict, first=tuple(hinted)) if d.name != architecture.name]
    return text + (". Closest registered: " + " | ".join(d.description for d in others[:2]) if others else "")


def check_same_classes(*backends: ModelBackend) -> None:
    """Teacher, Student and Base must have the same number of classes."""
    first = backends[0].info
    for other in backends[1:]:
        if other.info.num_classes != first.num_classes:
            raise ModelLoadError(
                f"{Path(first.path).name} has {first.num_classes} classes but {Path(other.info.path).name} "
                f"has {other.info.num_classes}: Teacher, Student and Base must agree")
