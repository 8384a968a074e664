"""A work-around for a reference-count bug in PySide6 (seen in 6.12.0).

``SignalInstance.emit()`` returns ``True`` without taking a new reference, so every signal emitted from
Python takes one reference away from ``True``. After a few thousand emits (pyqtgraph emits on every
mouse move and range change) Python aborts with "bool_dealloc: deallocating True or False". The bug
is detected at run time; where present, ``emit`` is wrapped to give the reference back. A PySide6
without the bug is left untouched.
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal, SignalInstance

PROBE_EMITS = 64
_applied = False


class _Probe(QObject):
    fired = Signal()


def emit_steals_a_reference() -> int:
    """How many references to True one ``emit()`` takes away (0 on a correct PySide6); the probe's
    own losses are given back."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(PROBE_EMITS):
        probe.fired.emit()
    lost = before - sys.getrefcount(True)
    _give_back(lost)
    return round(lost / PROBE_EMITS)


def _give_back(count: int) -> None:
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    for _ in range(max(count, 0)):
        incref(True)


def apply() -> bool:
    """Wrap ``SignalInstance.emit`` when this PySide6 has the bug; True when the wrapper is in place."""
    global _applied
    if _applied:
        return True
    if emit_steals_a_reference() < 1:
        return False
    original = SignalInstance.emit
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]

    def emit(self, *args):
        result = original(self, *args)
        if result is True or result is False:
            incref(result)  # the reference PySide6 forgot to add (an extra one on a bool is harmless)
        return result

    SignalInstance.emit = emit
    _applied = True
    return True
