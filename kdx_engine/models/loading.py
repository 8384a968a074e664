"""Load a model file of any supported PyTorch format into a backend, safely.

``torch.load`` always runs with ``weights_only=True`` (``argparse.Namespace`` allowed, nothing else);
a full pickled module is refused unless the caller passes ``trust_pickle=True``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backend import ModelBackend, ModelInfo
from .outputs import logits_of
from .preprocessing import Preprocessing, read_sidecar
from .registry import Architecture, fingerprint, get_architecture
from .script_backend import ScriptModuleBackend
from .torch_backend import TorchModuleBackend

FALLBACK_PRESET = Preprocessing(input_size=224, resize=None, source="imagenet-fallback")
FALLBACK_NOTE = "no .kdx.json sidecar and no family preset: ImageNet preset used (resize to {size}, ImageNet mean/std)"
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net", "student", "teacher")
PREFIXES = ("module.", "model.", "_orig_mod.")
ONNX_ROUTES = ("onnxruntime", "onnx2torch")


class ModelLoadError(ValueError):
    """A model file that cannot be loaded; the message names the file and the problem."""


class UntrustedPickleError(ModelLoadError):
    """The file holds a full pickled module: loading it would run code from the file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """One of ``onnx``, ``torchscript``, ``torch_export``, ``safetensors``, ``torch_pickle``."""
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
    return "torch_pickle"


def load_model(
    path,
    *,
    arch: str | None = None,
    which: str | None = None,
    trust_pickle: bool = False,
    preprocessing: Preprocessing | None = None,
    onnx_route: str = "onnxruntime",
) -> ModelBackend:
    """Load ``path`` into a backend. ``arch`` overrides architecture recognition; ``which`` picks
    ``"student"`` or ``"teacher"`` from a checkpoint holding both; ``trust_pickle`` allows a full
    pickled module (it runs code from the file). ``onnx_route``: ``"onnxruntime"`` (onnx-ad gradients)
    or ``"onnx2torch"`` (converted to PyTorch when logits match, else onnxruntime)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: no such model file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name}: file is empty")
    fmt = detect_format(path)
    try:
        sidecar = read_sidecar(path)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if fmt == "onnx":
        return _load_onnx(path, preprocessing or sidecar, onnx_route)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            if fmt == "torchscript":
                module, arch_name = torch.jit.load(str(path), map_location="cpu"), None
            elif fmt == "torch_export":
                (module, fixed_size), arch_name = _load_export(path), None
                if fixed_size and not (preprocessing or sidecar):
                    preprocessing = dataclasses.replace(FALLBACK_PRESET, input_size=fixed_size)
                    notes.append(f"input size {fixed_size} read from the exported program")
            else:
                module, arch_name = _load_weights(path, fmt, arch, which, trust_pickle, sidecar, notes)
    except ModelLoadError:
        raise
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path.name}: not a readable {fmt.replace('_', ' ')} file (corrupt, or not a checkpoint)") from exc
    except (RuntimeError, ValueError, OSError, EOFError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as exc:  # what torch's readers raise on corrupt bytes
        raise ModelLoadError(f"{path.name}: not a readable {fmt.replace('_', ' ')} file ({_first_line(exc)})") from exc
    config = preprocessing or sidecar or _preset_for(arch_name)
    if config.source == "imagenet-fallback":
        notes.append(FALLBACK_NOTE.format(size=config.input_size))
    num_classes = _probe_num_classes(module, config, path)
    config = _with_class_names(config, num_classes, path)
    info = ModelInfo(
        path=str(path), format=fmt, backend="torchscript" if fmt == "torchscript" else "pytorch",
        architecture=arch_name or (config.architecture if config.source == "sidecar" else None),
        num_classes=num_classes, num_parameters=sum(p.numel() for p in module.parameters()),
        preprocessing=config, sha256=sha256_of(path), notes=tuple(notes),
    )
    if fmt == "torchscript":
        return ScriptModuleBackend(module, info)
    return TorchModuleBackend(module, info)


def _load_onnx(path: Path, config: Preprocessing | None, route: str) -> ModelBackend:
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
    if config is None:
        config = FALLBACK_PRESET
        if graph.fixed_size:
            config = dataclasses.replace(config, input_size=graph.fixed_size)
            notes.append(f"input size {graph.fixed_size} read from the ONNX graph")
        notes.append(FALLBACK_NOTE.format(size=config.input_size))
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
        raise ModelLoadError(f"{path.name}: onnxruntime cannot run this model ({_first_line(exc)})") from exc
    logits = _probe_onnx_logits(backend, config, path)
    config = _with_class_names(config, int(logits.shape[1]), path)
    notes.append(f"route: onnxruntime, gradients through onnx-ad {_version('onnx-ad')} heads")
    info = dataclasses.replace(info, num_classes=int(logits.shape[1]), preprocessing=config, notes=tuple(notes))
    backend.info = info
    if route == "onnx2torch":
        from .onnx_torch import onnx2torch_backend

        upgraded, reason = onnx2torch_backend(backend)
        if upgraded is not None:
            return upgraded
        backend.info = dataclasses.replace(info, notes=(*info.notes, f"onnx2torch not used: {reason}"))
    return backend


def _probe_onnx_logits(backend, config: Preprocessing, path: Path) -> torch.Tensor:
    x = torch.zeros(1, 3, config.input_size, config.input_size)
    try:
        logits = backend.logits(x)
    except Exception as exc:  # onnxruntime's errors on a wrong input size or a broken graph
        raise ModelLoadError(
            f"{path.name}: model failed on a {config.input_size}×{config.input_size} input ({_first_line(exc)})") from exc
    if logits.dim() != 2:
        raise ModelLoadError(f"{path.name}: model output has shape {tuple(logits.shape)}, expected N×classes")
    return logits


def _with_class_names(config: Preprocessing, num_classes: int, path: Path) -> Preprocessing:
    if config.class_names and len(config.class_names) != num_classes:
        raise ModelLoadError(
            f"{path.name}: the sidecar names {len(config.class_names)} classes but the model outputs {num_classes}")
    return config if config.class_names else config.with_classes(f"class_{k}" for k in range(num_classes))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _preset_for(arch_name: str | None) -> Preprocessing:
    if arch_name is None:
        return FALLBACK_PRESET
    return get_architecture(arch_name).preset


def _load_export(path: Path) -> tuple[nn.Module, int | None]:
    """The program's module hierarchy, and its input size when the program fixed it."""
    program = torch.export.load(str(path))
    user_inputs = set(program.graph_signature.user_inputs)
    size = None
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" and node.name in user_inputs else None
        if value is not None and value.dim() == 4 and isinstance(value.shape[2], int):
            size = int(value.shape[2])
            break
    return torch.export.unflatten(program), size


def _load_weights(path, fmt, arch, which, trust_pickle, sidecar, notes) -> tuple[nn.Module, str | None]:
    """A state_dict (any container) built into its architecture, or a trusted full module."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    else:
        obj = _torch_load(path, trust_pickle)
    if isinstance(obj, nn.Module):
        notes.append("full pickled module loaded because the file was explicitly trusted")
        return obj, None
    container_module = _find_module(obj)
    if container_module is not None:
        notes.append("full pickled module loaded because the file was explicitly trusted")
        return container_module, None
    state_dict = extract_state_dict(obj, which, notes, path.name)
    arch_name = arch or (sidecar.architecture if sidecar and sidecar.architecture else None)
    architecture, num_classes = _choose_architecture(state_dict, arch_name, notes, path.name)
    module = architecture.build(num_classes)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path.name}: weights do not fit architecture {architecture.name} ({_first_line(exc)})") from exc
    return module, architecture.name


def _torch_load(path: Path, trust_pickle: bool):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):
            raise  # corrupt bytes, not a pickle that names code to run
        if not trust_pickle:
            raise UntrustedPickleError(
                f"{path.name}: holds pickled Python objects, not just weights; loading it would run code "
                "from the file. Refused: load it only if you trust its source (--trust-pickle)") from exc
    return torch.load(str(path), map_location="cpu", weights_only=False)


def _find_module(obj) -> nn.Module | None:
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), nn.Module):
                return obj[key]
    return None


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(obj, which: str | None, notes: list[str], name: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint: bare, under a container key, ``module.`` prefixes removed;
    mdistiller's ``module.student.``/``module.teacher.`` give two models, chosen by ``which``."""
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        keys = ([which] if which else []) + [k for k in STATE_DICT_KEYS if k != which]
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                return extract_state_dict(obj[key], which, notes, name)
    if not _is_state_dict(obj):
        kind = type(obj).__name__
        raise ModelLoadError(f"{name}: holds a {kind}, not model weights (no state_dict found)")
    state = {k: v for k, v in obj.items()}
    state = _split_roles(state, which, notes, name)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _split_roles(state, which, notes, name):
    roles = {}
    for role in ("student", "teacher"):
        for prefix in (f"module.{role}.", f"{role}."):
            part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if part:
                roles[role] = part
                break
    if not roles:
        return state
    chosen = which or ("student" if "student" in roles else next(iter(roles)))
    if chosen not in roles:
        raise ModelLoadError(f"{name}: holds no {chosen} weights (it has: {', '.join(roles)})")
    others = [r for r in roles if r != chosen]
    if others:
        notes.append(f"checkpoint also holds a {others[0]} model (load it with which='{others[0]}')")
    return roles[chosen]


def _choose_architecture(state_dict, arch_name, notes, name) -> tuple[Architecture, int]:
    if arch_name is not None:
        try:
            architecture = get_architecture(arch_name)
        except KeyError as exc:
            raise ModelLoadError(f"{name}: {exc.args[0]}") from exc
        matches = [(a, k) for a, k in fingerprint(state_dict) if a.name == arch_name]
        if not matches:
            raise ModelLoadError(f"{name}: parameter names/shapes do not match architecture {arch_name}")
        return matches[0]
    matches = fingerprint(state_dict)
    if not matches:
        raise ModelLoadError(
            f"{name}: architecture not recognised from its {len(state_dict)} parameters; name it with --arch "
            "(see 'kdx info --list-archs') or save the model as TorchScript")
    if len(matches) > 1:
        notes.append("parameters also fit: " + ", ".join(a.name for a, _ in matches[1:]))
    notes.append(f"architecture recognised from parameter names and shapes: {matches[0][0].name}")
    return matches[0]


def _probe_num_classes(module, config: Preprocessing, path: Path) -> int:
    x = torch.zeros(1, 3, config.input_size, config.input_size)
    try:
        with torch.no_grad():
            logits = logits_of(module.eval()(x))
    except Exception as exc:  # a model's own error: report it, never crash
        raise ModelLoadError(
            f"{path.name}: model failed on a {config.input_size}×{config.input_size} input ({_first_line(exc)})") from exc
    if logits.dim() != 2:
        raise ModelLoadError(f"{path.name}: model output has shape {tuple(logits.shape)}, expected N×classes")
    return int(logits.shape[1])


def check_same_classes(*backends: ModelBackend) -> None:
    """Teacher, Student and Base must have the same number of classes."""
    first = backends[0].info
    for other in backends[1:]:
        if other.info.num_classes != first.num_classes:
            raise ModelLoadError(
                f"{Path(first.path).name} has {first.num_classes} classes but {Path(other.info.path).name} "
                f"has {other.info.num_classes}: Teacher, Student and Base must agree")
