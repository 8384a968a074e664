"""PySide6 calls must not use up the references to None, True and False (PySide6 6.12 on Python 3.11
loses one per call; the app would abort after a few thousand label updates or signal emits)."""
import sys

from PySide6.QtCore import QObject, Signal

import kdx_gui  # noqa: F401 - importing the package applies the work-around
from kdx_gui import pyside_fixes

RUNWAY = 10**9  # references that must stay in reserve: far more calls than any session makes


class Emitter(QObject):
    changed = Signal(object)


def test_none_true_and_false_cannot_run_out_of_references():
    emitter = Emitter()
    received = []
    emitter.changed.connect(received.append)
    for i in range(20000):
        emitter.changed.emit(i)
        emitter.setObjectName("x")
    assert len(received) == 20000
    lost = pyside_fixes.references_lost_per_call()
    for singleton in (None, True, False):
        assert sys.getrefcount(singleton) > RUNWAY or max(lost.values()) == 0
