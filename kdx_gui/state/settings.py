"""Settings kept between runs (QSettings): last folders, window geometry, colormap and opacity."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANISATION = "KDX"
APPLICATION = "KDX"
FOLDER_KINDS = ("models", "images", "projects", "datasets")


class AppSettings:
    """Typed access to the app's QSettings; unreadable values fall back to the defaults."""

    def __init__(self, store: QSettings | None = None):
        self.store = store or QSettings(ORGANISATION, APPLICATION)

    def last_folder(self, kind: str) -> str:
        value = self.store.value(f"folders/{kind}", "")
        return value if isinstance(value, str) and value and Path(value).is_dir() else str(Path.home())

    def remember_folder(self, kind: str, path: str | Path) -> None:
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        self.store.setValue(f"folders/{kind}", str(folder))

    def geometry(self) -> QByteArray | None:
        value = self.store.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        value = self.store.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_was_compact(self) -> bool:
        """Whether the saved dock layout is the narrow window's (Models tabbed beside Metrics)."""
        return str(self.store.value("window/compact", "false")).lower() == "true"

    def save_window(self, geometry: QByteArray, state: QByteArray, compact: bool = False) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)
        self.store.setValue("window/compact", "true" if compact else "false")

    def colormap(self, default: str = "jet") -> str:
        value = self.store.value("view/colormap", default)
        return value if isinstance(value, str) and value else default

    def opacity(self, default: float = 0.5) -> float:
        try:
            value = float(self.store.value("view/opacity", default))
        except (TypeError, ValueError):
            return default
        return min(max(value, 0.0), 1.0)

    def save_view(self, colormap: str, opacity: float) -> None:
        self.store.setValue("view/colormap", colormap)
        self.store.setValue("view/opacity", float(opacity))

    def sync(self) -> None:
        self.store.sync()
