"""Loading ``torch.export`` programs (``.pt2``) without running code from the file.

``torch.export.load`` unpickles parts of the archive with a full unpickler: the sample inputs (after a
failed ``weights_only=True`` try), weights and tensor constants marked ``use_pickle`` and the legacy
weight/constant files (``torch.load(weights_only=False)``), and opaque constant objects
(``pickle.loads``). Any of them can name a function to call. While a program is read here, an audit
hook refuses, on the reading thread only, every global a full unpickler resolves that
``torch.load(weights_only=True)`` does not allow: nothing from the file is called, whichever of torch's
paths reads it and whatever the archive's layout. A refused program is an ``UntrustedPickleError``,
as a pickled module is; with ``trust_pickle`` it is read without the hook.

The file's bytes are read once, so what was checked is what is loaded.
"""
from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import UntrustedPickleError

_guarded = threading.local()  # .refused: the globals refused on this thread, or None when not guarding
_hook_lock = threading.Lock()
_hook_installed = False


class _RefusedGlobal(Exception):
    """Raised inside the unpickler: the file names code that weights_only loading does not allow."""


def _allowed_globals() -> frozenset[str]:
    """``module.name`` of the globals ``torch.load(weights_only=True)`` resolves."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return frozenset(_get_allowed_globals())
    except (ImportError, AttributeError):  # another torch: allow nothing, so every pickled part is refused
        return frozenset()


def _audit(event: str, args) -> None:
    refused = getattr(_guarded, "refused", None)
    if refused is None or event != "pickle.find_class":
        return
    name = f"{args[0]}.{args[1]}"
    if name not in _ALLOWED:
        refused.append(name)
        raise _RefusedGlobal(name)


_ALLOWED = _allowed_globals()


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # audit hooks cannot be removed: it does nothing off a guarded thread
            _hook_installed = True


def load_export(path: Path, trust_pickle: bool = False) -> tuple[nn.Module, int | None]:
    """The program's module hierarchy, and its input size when the program fixed it. A program whose
    pickled parts name code is an ``UntrustedPickleError`` unless ``trust_pickle``."""
    data = path.read_bytes()
    if trust_pickle:
        program = torch.export.load(io.BytesIO(data))
    else:
        program = _load_guarded(data, path.name)
    return torch.export.unflatten(program), _fixed_input_size(program)


def _load_guarded(data: bytes, name: str):
    _install_hook()
    _guarded.refused = refused = []
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:
        if not refused:
            raise
        raise _untrusted(name, refused) from exc
    finally:
        _guarded.refused = None
    if refused:  # refused inside a reader whose error torch caught and logged
        raise _untrusted(name, refused)
    return program


def _untrusted(name: str, refused: list[str]) -> UntrustedPickleError:
    return UntrustedPickleError(
        f"{name}: torch.export program whose pickled parts name code ({refused[0]}); loading it would run "
        "code from the file. Refused: load it only if you trust its source (--trust-pickle)")


def _fixed_input_size(program) -> int | None:
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" and node.name in user_inputs else None
        if value is not None and value.dim() == 4 and isinstance(value.shape[2], int):
            return int(value.shape[2])
    return None
