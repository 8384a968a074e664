"""Reading checkpoint files safely: the objects inside a ``torch.save`` or safetensors file, and the
state_dict inside those objects.

``torch.load`` always runs with ``weights_only=True`` (``argparse.Namespace`` allowed, nothing else);
a file that names other code to run is refused unless the caller trusts it. A safetensors header is
validated against the file before any tensor is read. This module depends on nothing else in the
engine, so the model loader and the method packages (VAM's views over training checkpoints) share it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .messages import first_line
from .file_reading import special_kind
from .tensor_unpickler import RefusedGlobalError, load_tensor_pickle

STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net", "student", "teacher")
PREFIXES = ("module.", "model.", "_orig_mod.")
SAFETENSORS_ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                          "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit


class ModelLoadError(ValueError):
    """A model file that cannot be loaded; the message names the file and the problem."""


class ArchitectureError(ModelLoadError):
    """A state_dict whose architecture was not recognised, or does not fit the one named. The message
    says what differs and advises nothing interface-specific; ``cli_hint`` is what the command line adds."""

    cli_hint = "name the architecture with --arch (see 'kdx info --list-archs'), or save the model as TorchScript"


class UntrustedPickleError(ModelLoadError):
    """The file holds a full pickled module: loading it would run code from the file."""


def read_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False, notes: list[str] | None = None):
    """The object saved in ``path``: a safetensors file's tensors (header validated first), or what
    ``torch.load`` gives with ``weights_only=True``; an older pickle of tensors that weights-only loading
    refuses, rebuilt by the restricted unpickler (said in ``notes``); a pickle naming other code is an
    UntrustedPickleError (naming it) unless ``trust_pickle``. The reader's own exceptions on corrupt bytes
    pass through."""
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        raise ModelLoadError(f"{path.name}: is {kind}, not a checkpoint file")
    if path.suffix.lower() == ".safetensors":
        check_safetensors(path)
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return _torch_load(path, trust_pickle, notes)


def checkpoint_state_dict(path: str | os.PathLike, which: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict saved in ``path`` (any container ``extract_state_dict`` knows), never trusting pickles."""
    path = Path(path)
    return extract_state_dict(read_checkpoint(path), which, [], path.name)


def _torch_load(path: Path, trust_pickle: bool, notes: list[str] | None):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = exc  # a global it does not allow, an opcode it does not know (protocol 4+), or corrupt bytes
    try:  # an older pickle of tensors: rebuilt by the restricted unpickler, or refused by name
        obj = load_tensor_pickle(path)
    except RefusedGlobalError as exc:
        refused = exc
    except Exception:  # noqa: BLE001 - not a pickle the restricted unpickler reads: weights-only's word stands
        if "GLOBAL" not in str(refused):
            raise refused from None  # corrupt bytes, not a pickle that names code to run
    else:
        if notes is not None:
            notes.append("an older pickle of tensors (refused by weights-only loading): rebuilt by KDX's "
                         "restricted unpickler, which runs nothing from the file")
        return obj
    if not trust_pickle:
        named = f" (it names {refused.name})" if isinstance(refused, RefusedGlobalError) else ""
        raise UntrustedPickleError(
            f"{path.name}: holds pickled Python objects, not just weights{named}; loading it would run code "
            "from the file. Refused: load it only if you trust its source (--trust-pickle)") from refused
    return torch.load(str(path), map_location="cpu", weights_only=False)


def check_safetensors(path: Path) -> None:
    """Validate a safetensors file's header against the file before anything is read from it: the
    8-byte length within the file, a JSON object, known dtypes, shapes and offsets inside the data."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelLoadError(f"{path.name}: not a safetensors file ({size} bytes, shorter than the 8-byte "
                                 "header length)")
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise ModelLoadError(f"{path.name}: safetensors header length {length:,} bytes exceeds the "
                                 f"{size - 8:,} bytes that follow it (truncated, or not a safetensors file)")
        if length > MAX_SAFETENSORS_HEADER:
            raise ModelLoadError(f"{path.name}: safetensors header length {length:,} bytes exceeds the "
                                 f"format's limit of {MAX_SAFETENSORS_HEADER:,}")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON
        raise ModelLoadError(f"{path.name}: safetensors header is not valid JSON ({first_line(exc)})") from exc
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path.name}: safetensors header is a JSON {type(header).__name__}, not an object")
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ModelLoadError(f"{path.name}: safetensors __metadata__ must map names to strings")
            continue
        _check_safetensors_entry(path.name, name, entry, data_bytes)


def _check_safetensors_entry(file: str, name: str, entry, data_bytes: int) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(entry, dict):
        raise ModelLoadError(f"{file}: safetensors entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_ITEM_BYTES:
        raise ModelLoadError(f"{file}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(is_int(d) for d in shape):
        raise ModelLoadError(f"{file}: tensor {name!r} has a bad shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets) \
            or offsets[0] > offsets[1]:
        raise ModelLoadError(f"{file}: tensor {name!r} has bad data offsets {offsets!r}")
    if offsets[1] > data_bytes:
        raise ModelLoadError(f"{file}: tensor {name!r} data offsets {offsets} run past the end of the file "
                             f"({data_bytes:,} data bytes)")
    expected = math.prod(shape) * SAFETENSORS_ITEM_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise ModelLoadError(f"{file}: tensor {name!r} has {offsets[1] - offsets[0]:,} bytes of data but its "
                             f"{dtype} shape {shape} needs {expected:,}")


def find_module(obj) -> nn.Module | None:
    """A full module saved under one of the container keys (only in a trusted pickle)."""
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), nn.Module):
                return obj[key]
    return None


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(obj, which: str | None, notes: list[str], name: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint: bare, under a container key, ``module.`` prefixes removed;
    mdistiller's ``module.student.``/``module.teacher.`` give two models, chosen by ``which``; a timm
    training checkpoint's EMA weights with ``which="ema"``; a PyTorch Lightning checkpoint's
    ``state_dict`` without the LightningModule's attribute prefix (``model.``, ``net.``, …)."""
    if which == EMA or (isinstance(obj, Mapping) and which is None and _ema_key(obj)):
        return _training_or_ema(obj, which, notes, name)
    if is_lightning_checkpoint(obj):
        state = extract_state_dict(obj["state_dict"], which, notes, name)
        notes.append(f"PyTorch Lightning checkpoint{_lightning_version(obj)}: its state_dict was loaded")
        return _without_wrapper(state, notes)
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        keys = ([which] if which else []) + [k for k in STATE_DICT_KEYS if k != which]
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                return extract_state_dict(obj[key], which, notes, name)
    if not _is_state_dict(obj):
        if isinstance(obj, Mapping) and not obj and name.endswith(".safetensors"):
            raise ModelLoadError(f"{name}: holds no tensors")
        raise ModelLoadError(f"{name}: holds a Python {kind_of(obj)}, not a model or state_dict")
    state = {k: v for k, v in obj.items()}
    state = _split_roles(state, which, notes, name)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


EMA = "ema"  # ``which`` value that picks a training checkpoint's exponential-moving-average weights
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
LIGHTNING_KEYS = ("pytorch-lightning_version", "hyper_parameters", "optimizer_states", "loops")


def _ema_key(obj) -> str | None:
    """The key of the EMA weights beside the training weights in a (timm) training checkpoint, or None."""
    if not isinstance(obj, Mapping) or _is_state_dict(obj):
        return None
    return next((k for k in EMA_KEYS if isinstance(obj.get(k), Mapping) and _state_dict_or_none(obj[k])), None)


def _training_or_ema(obj, which, notes, name):
    """A timm training checkpoint's ``state_dict`` (the default, with a note that EMA weights exist) or
    its ``state_dict_ema`` (``which="ema"``)."""
    key = _ema_key(obj)
    if which == EMA:
        if key is None:
            raise ModelLoadError(f"{name}: holds no EMA weights (no {' / '.join(EMA_KEYS[:2])} entry)")
        notes.append(f"EMA weights loaded ({key})")
        return extract_state_dict(obj[key], None, notes, name)
    rest = {k: v for k, v in obj.items() if k not in EMA_KEYS}
    state = extract_state_dict(rest, None, notes, name)
    notes.append(f"the checkpoint also holds EMA weights ({key}); the training weights were loaded "
                 "(take the EMA weights with which='ema')")
    return state


def is_lightning_checkpoint(obj) -> bool:
    """A PyTorch Lightning ``.ckpt``: a ``state_dict`` beside Lightning's own entries."""
    return isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) \
        and any(key in obj for key in LIGHTNING_KEYS)


def _lightning_version(obj) -> str:
    version = obj.get("pytorch-lightning_version")
    return f" (Lightning {version})" if isinstance(version, str) else ""


def _without_wrapper(state: dict, notes: list[str]) -> dict:
    """The state_dict without the one attribute every name starts with (the LightningModule's
    ``self.model`` / ``self.net`` …), repeated while one is shared."""
    while state and len(state) > 1:
        heads = {k.split(".", 1)[0] for k in state}
        if len(heads) != 1 or not all("." in k for k in state):
            break
        head = heads.pop()
        state = {k[len(head) + 1:]: v for k, v in state.items()}
        notes.append(f"prefix '{head}.' (the LightningModule's attribute) removed from the names")
    return state


ROLES_IN_FILE = ("student", "teacher")


def roles_in_checkpoint(obj) -> list[str]:
    """The roles (``which`` values) of the models a checkpoint object holds beside each other:
    ``["student", "teacher"]`` for mdistiller's ``module.student.``/``module.teacher.`` state_dict or a
    container with a ``student`` and a ``teacher`` state_dict; ``[]`` for a single model or none."""
    if isinstance(obj, Mapping) and not _is_state_dict(obj) and \
            all(_state_dict_or_none(obj.get(role)) is not None for role in ROLES_IN_FILE):
        return list(ROLES_IN_FILE)
    state = _state_dict_or_none(obj)
    roles = list(_roles(state)) if state is not None else []
    return roles if len(roles) > 1 else []


def _state_dict_or_none(obj):
    """The (prefixed) state_dict inside a container, or None; the container lookup of ``extract_state_dict``."""
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _state_dict_or_none(obj[key])
    return obj if _is_state_dict(obj) else None


def _roles(state) -> dict[str, dict]:
    """The student's and the teacher's parameters in one state_dict, by role (empty for a single model)."""
    roles = {}
    for role in ROLES_IN_FILE:
        for prefix in (f"module.{role}.", f"{role}."):
            part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if part:
                roles[role] = part
                break
    return roles


def _split_roles(state, which, notes, name):
    roles = _roles(state)
    if not roles:
        return state
    chosen = which or ("student" if "student" in roles else next(iter(roles)))
    if chosen not in roles:
        raise ModelLoadError(f"{name}: holds no {chosen} weights (it has: {', '.join(roles)})")
    others = [r for r in roles if r != chosen]
    if others:
        notes.append(f"checkpoint also holds a {others[0]} model (load it with which='{others[0]}')")
    return roles[chosen]


def kind_of(obj) -> str:
    """A short description of a Python object, e.g. ``dict (keys: a, b)`` or ``list of 3 items``."""
    kind = type(obj).__name__
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:4]]
        return f"{kind} (keys: {', '.join(keys)}{', …' if len(obj) > 4 else ''})" if keys else f"{kind} (empty)"
    if isinstance(obj, (list, tuple, set)):
        return f"{kind} of {len(obj)} item{'s' if len(obj) != 1 else ''}"
    return kind


