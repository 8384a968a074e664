"""Garbage collection on the GUI thread only.

A Qt wrapper that Python's cycle collector frees on a worker thread is deleted later on the GUI
thread (PySide6 defers it); if Qt has deleted the object in between (a closed window), that deferred
delete is a double free and the app crashes. pyqtgraph's ``GarbageCollector`` turns automatic
collection off and collects from a timer on the GUI thread; this module runs one for the life of the
application (automatic collection comes back when the application object is destroyed) and, after
start-up, freezes the long-lived objects (torch's modules) so later full collections stay short
enough not to stall the event loop.
"""
from __future__ import annotations

import gc

import shiboken6
from PySide6.QtCore import QCoreApplication
from pyqtgraph.util.garbage_collector import GarbageCollector

INTERVAL_S = 0.5
_collector: GarbageCollector | None = None
_frozen = False


def collect_on_gui_thread() -> GarbageCollector | None:
    """Turn automatic collection off for the life of the application and collect on a GUI timer;
    the running collector (None before a QApplication exists)."""
    global _collector
    app = QCoreApplication.instance()
    if _collector is None and app is not None:
        _collector = GarbageCollector(interval=INTERVAL_S)
        app.destroyed.connect(_stop_collecting)
    return _collector


def _stop_collecting(*_args) -> None:
    global _collector
    if _collector is not None and shiboken6.isValid(_collector.timer):  # Qt may have deleted it already
        _collector.timer.stop()
    _collector = None
    gc.enable()


def freeze_long_lived() -> None:
    """Once, after the engine is imported: move everything alive now out of future collections."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
