"""The layout every metrics tab shares: header widgets at their natural height over the tab's views,
which share the rest of the height in a vertical splitter the user can drag."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget


def headers_over_views(widget: QWidget, headers: list[QWidget], views: list[QWidget],
                       sizes: list[int] | None = None) -> QSplitter:
    """Lay ``widget`` out as ``headers`` above ``views``; returns the views' splitter."""
    splitter = QSplitter(Qt.Orientation.Vertical)
    for view in views:
        splitter.addWidget(view)
    if sizes:
        splitter.setSizes(sizes)
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(2, 2, 2, 2)
    for header in headers:
        layout.addWidget(header)
    layout.addWidget(splitter, 1)
    return splitter
