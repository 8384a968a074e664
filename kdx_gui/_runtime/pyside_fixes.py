"""A work-around for PySide6 6.12 on Python 3.11, applied on Python < 3.12 only: PySide6 returns
``None``, ``True`` and ``False`` without taking a new reference.

Python 3.12 made these three objects immortal (PEP 683), so a missing reference costs nothing there
and ``apply()`` does nothing: this module exists for 3.11 and goes when 3.11 does. On 3.11 every
``label.setText(...)``, ``timer.start()`` or ``signal.emit(...)`` takes one reference away, and after
a few thousand calls Python aborts with "none_dealloc: deallocating None" (or ``bool_dealloc``).
Where the loss is detected, the three objects get a reserve of 2⁴⁰ references, which makes them as
good as immortal, as they are on 3.12. A PySide6 without the bug is left untouched.
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

PROBE_CALLS = 64
RESERVE = 1 << 40
_applied = False


class _Probe(QObject):
    fired = Signal()


def references_lost_per_call() -> dict[str, float]:
    """References to None and True lost per PySide6 call returning them (0 on a correct build)."""
    probe = _Probe()
    none_before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")  # returns None
    none_lost = none_before - sys.getrefcount(None)
    true_before = sys.getrefcount(True)
    for _ in range(PROBE_CALLS):
        probe.fired.emit()  # returns True
    true_lost = true_before - sys.getrefcount(True)
    return {"None": none_lost / PROBE_CALLS, "True": true_lost / PROBE_CALLS}


def apply() -> bool:
    """Give None, True and False their reserve when this PySide6 loses references to them."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12):
        return False  # immortal already
    lost = references_lost_per_call()
    if max(lost.values()) < 0.5:
        return False
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += RESERVE  # ob_refcnt, the first field
    _applied = True
    return True
