"""KDX's window: PySide6 + pyqtgraph views over the engine's public API."""
from . import pyside_fixes

pyside_fixes.apply()
