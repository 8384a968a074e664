"""Process-wide work-arounds, installed once by ``kdx_gui.app.main`` before the window is built:
the PySide6 reference fix (Python < 3.12 only) and garbage collection on the GUI thread."""
from __future__ import annotations

from kdx_gui._runtime import gc_policy, pyside_fixes


def install() -> None:
    """Apply both work-arounds (idempotent); call with the QApplication created."""
    pyside_fixes.apply()
    gc_policy.collect_on_gui_thread()
