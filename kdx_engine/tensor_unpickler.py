"""A restricted unpickler for older checkpoints that hold only tensors but that ``weights_only=True``
refuses: a state_dict written with plain ``pickle`` (each storage rebuilt through
``torch.storage._load_from_bytes``, each tensor through ``torch._utils._rebuild_tensor_v2``), possibly
inside a legacy or zip ``torch.save`` file.

Exactly those rebuild functions (and ``OrderedDict``, ``argparse.Namespace``, and the latin-1
``_codecs.encode`` with which protocol-2 pickles write bytes) are resolved, each to a
KDX function that checks its arguments and rebuilds with weights-only loading; every other global is
refused by name when the unpickler meets it, before anything could call it. Nothing from the file runs.
"""
from __future__ import annotations

import argparse
import collections
import io
import numbers
import os
import pickle
import types
import zipfile

import torch


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the tensor-rebuilding ones (``name`` is ``module.qualname``)."""

    def __init__(self, name: str):
        super().__init__(f"global {name} refused")
        self.name = name


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list, torch.Size)) or not all(_is_int(v) for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be integers, got {type(value).__name__}")
    return tuple(int(v) for v in value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked_storage(storage):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"a tensor's storage must be a torch storage, got {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride):
    """``torch._utils._rebuild_tensor`` with its arguments checked (a view of a loaded storage)."""
    if not _is_int(storage_offset):
        raise pickle.UnpicklingError("a tensor's storage offset must be an integer")
    return torch._utils._rebuild_tensor(_checked_storage(storage), int(storage_offset), _ints(size, "size"),
                                        _ints(stride, "stride"))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """``torch._utils._rebuild_tensor_v2`` without hooks or Python attributes (weights only)."""
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks is not plain weights")
    if metadata:
        raise pickle.UnpicklingError("a tensor with Python metadata is not plain weights")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """A saved ``nn.Parameter``: its tensor (hooks refused)."""
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise pickle.UnpicklingError("a parameter must hold a tensor and no hooks")
    return data


def _load_from_bytes(data):
    """``torch.storage._load_from_bytes``: a storage saved by ``torch.save`` into bytes, read with this
    same restricted unpickler (never with a full one)."""
    if isinstance(data, str):  # a Python 2 pickle's str, read as latin-1
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a pickled storage must be bytes")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=False,
                         pickle_module=RESTRICTED_PICKLE)
    return _checked_storage(storage)


def _encode(text, encoding="utf-8"):
    """``_codecs.encode`` as protocol-2 pickles use it to write bytes: a str encoded as latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 text is turned into bytes")
    return text.encode("latin1")


SAFE_GLOBALS = {
    "_codecs.encode": _encode,
    "collections.OrderedDict": collections.OrderedDict,
    "argparse.Namespace": argparse.Namespace,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_from_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``SAFE_GLOBALS``; any other global is a RefusedGlobalError naming it. Persistent ids
    are refused by the base class unless ``torch.load`` sets its own (storages read from its records)."""

    def find_class(self, module, name):
        found = SAFE_GLOBALS.get(f"{module}.{name}")
        if found is None:
            raise RefusedGlobalError(f"{module}.{name}")
        return found


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# What ``torch.load(pickle_module=…)`` uses: torch's own file formats, storages from their records, and
# this unpickler for every global.
RESTRICTED_PICKLE = types.SimpleNamespace(__name__="kdx_restricted_pickle", Unpickler=RestrictedUnpickler,
                                          load=_restricted_load, UnpicklingError=pickle.UnpicklingError)


def load_tensor_pickle(path: str | os.PathLike):
    """The object in ``path`` (a ``torch.save`` file in either format, or a plain pickle) rebuilt with
    ``SAFE_GLOBALS`` only; RefusedGlobalError naming the first other global it meets."""
    if zipfile.is_zipfile(path) or _has_legacy_header(path):
        return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE)
    with open(path, "rb") as handle:  # a plain pickle (no torch.save header)
        return _restricted_load(handle, encoding="latin1")


_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _has_legacy_header(path) -> bool:
    """A legacy (non-zip) ``torch.save`` file: it opens with the pickled magic number."""
    with open(path, "rb") as handle:
        return _LEGACY_MAGIC in handle.read(16)
