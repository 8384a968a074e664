"""Emitting signals from Python must not take references away from True (a PySide6 6.12 bug that aborts
the app after a few thousand emits, e.g. mouse moves over a pyqtgraph view)."""
import sys

from PySide6.QtCore import QObject, Signal

import kdx_gui  # noqa: F401 - importing the package applies the work-around
from kdx_gui import pyside_fixes


class Emitter(QObject):
    changed = Signal(object)


def test_emitting_signals_keeps_true_alive():
    emitter = Emitter()
    received = []
    emitter.changed.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(20000):
        emitter.changed.emit(i)
    assert abs(sys.getrefcount(True) - before) < 50
    assert len(received) == 20000
    assert pyside_fixes.emit_steals_a_reference() == 0
