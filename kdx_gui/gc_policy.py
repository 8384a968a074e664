"""Garbage collection on the GUI thread only.

A Qt wrapper that Python's cycle collector frees on a worker thread is deleted later on the GUI
thread (PySide6 defers it); if Qt has deleted the object in between (a closed window), that deferred
delete is a double free and the app crashes. As pyqtgraph recommends, automatic collection is turned
off and a timer collects on the GUI thread; after start-up the long-lived objects (torch's modules)
are frozen, so later full collections stay short enough not to stall the event loop.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 500
_collector: "_GuiThreadCollector | None" = None
_frozen = False


class _GuiThreadCollector(QObject):
    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(INTERVAL_MS)

    def collect(self) -> None:
        """Collect the generations whose counts passed their thresholds, as automatic collection would."""
        count0, count1, count2 = gc.get_count()
        if count0 > self.threshold[0]:
            generation = 0
            if count1 > self.threshold[1]:
                generation = 2 if count2 > self.threshold[2] else 1
            gc.collect(generation)


def collect_on_gui_thread() -> None:
    """Turn automatic collection off for the life of the application and collect on a GUI timer."""
    global _collector
    app = QCoreApplication.instance()
    if _collector is None and app is not None:
        _collector = _GuiThreadCollector(app)
        app.destroyed.connect(_forget_collector)


def _forget_collector(*_args) -> None:
    global _collector
    _collector = None
    gc.enable()


def freeze_long_lived() -> None:
    """Once, after the engine is imported: move everything alive now out of future collections."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
