"""The process-wide work-arounds that ``app.main`` installs: PySide6 calls must not use up the
references to None, True and False (PySide6 6.12 on Python 3.11 loses one per call; the app would
abort after a few thousand label updates or signal emits), and garbage is collected on the GUI
thread only, by a timer."""
import gc
import sys
import weakref

from PySide6.QtCore import QObject, Signal

from gui_fixtures import isolated_settings  # noqa: F401 - fixture (installs the work-arounds)
from kdx_gui import _runtime
from kdx_gui._runtime import gc_policy, pyside_fixes

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
    if sys.version_info >= (3, 12):
        assert max(lost.values()) == 0  # immortal: nothing to lose, nothing applied
        assert pyside_fixes._applied is False
    elif max(lost.values()) > 0:  # this PySide6 has the bug: the reserve must be there
        assert pyside_fixes._applied
        for singleton in (None, True, False):
            assert sys.getrefcount(singleton) > RUNWAY


def test_garbage_is_collected_by_a_timer_on_the_gui_thread(qtbot):
    _runtime.install()
    collector = gc_policy.collect_on_gui_thread()
    assert collector is not None and collector.timer.isActive()
    assert not gc.isenabled()  # no collection may start on a worker thread

    class Node:
        pass

    node = Node()
    node.self = node  # a cycle: only the collector frees it
    gone = weakref.ref(node)
    del node
    assert gone() is not None
    kept = []

    def collected() -> bool:
        kept.append([[] for _ in range(100)])  # a running window's allocations, which start collections
        return gone() is None

    qtbot.waitUntil(collected, timeout=4 * int(gc_policy.INTERVAL_S * 1000))
    assert not gc.isenabled()
