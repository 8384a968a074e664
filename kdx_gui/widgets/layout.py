"""The layout every metrics tab shares: header widgets at their natural height over the tab's views,
which share the rest of the height in a vertical splitter the user can drag."""
from __future__ import annotations

import math

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLayout, QLayoutItem, QSplitter, QVBoxLayout, QWidget


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


class FlowLayout(QLayout):
    """Items left to right, wrapping to a new line where the width runs out (Qt's flow layout example):
    rows of controls that fit any width instead of cutting their labels."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6, line_spacing: int = 2):
        super().__init__(parent)
        self.items: list[QLayoutItem] = []
        self._spacing, self._line_spacing = spacing, line_spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self.items.append(item)

    def count(self) -> int:
        return len(self.items)

    def itemAt(self, index: int):
        return self.items[index] if 0 <= index < len(self.items) else None

    def takeAt(self, index: int):
        return self.items.pop(index) if 0 <= index < len(self.items) else None

    def expandingDirections(self):
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self.items:
            size = size.expandedTo(item.minimumSize())
        left, top, right, bottom = self.getContentsMargins()
        return size + QSize(left + right, top + bottom)

    def _arrange(self, rect: QRect, move: bool) -> int:
        left, top, right, bottom = self.getContentsMargins()
        area = rect.adjusted(left, top, -right, -bottom)
        x, y, line_height = area.x(), area.y(), 0
        for item in self.items:
            if item.isEmpty():
                continue
            hint = item.sizeHint()
            if x + hint.width() > area.right() + 1 and line_height > 0:
                x, y = area.x(), y + line_height + self._line_spacing
                line_height = 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._spacing
            line_height = max(line_height, hint.height())
        return y + line_height - rect.y() + bottom


def labelled(label: str | QLabel | None, *widgets: QWidget, spacing: int = 4) -> QWidget:
    """A label and its controls as one unit, so a flow layout never separates them."""
    unit = QWidget()
    row = QHBoxLayout(unit)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(spacing)
    if label is not None:
        row.addWidget(label if isinstance(label, QLabel) else QLabel(label))
    for widget in widgets:
        row.addWidget(widget)
    return unit


def choose_grid(width: float, height: float, cells: int, overhead: float, spacing: float = 0.0,
                max_columns: int = 4, min_view: float = 120, pad: float = 6) -> tuple[int, float]:
    """(columns, cell height) for ``cells`` equal cells in ``width`` × ``height``: the column count that
    gives the largest square view box (a cell is ``overhead`` px of labels over its view box). When even
    that is under ``min_view``, the most columns whose view boxes are still ``min_view`` wide, and a cell
    height that asks for more than ``height`` (the canvas then scrolls)."""
    best = (1, 0.0, height)
    for columns in range(1, max_columns + 1):
        rows = math.ceil(cells / columns)
        cell_w = (width - (columns - 1) * spacing) / columns
        cell_h = (height - (rows - 1) * spacing) / rows
        view = min(cell_w - pad, cell_h - overhead)
        if view > best[1]:
            best = (columns, view, cell_h)
    if best[1] >= min_view:
        return best[0], best[2]
    columns = 1
    for candidate in range(1, max_columns + 1):
        if (width - (candidate - 1) * spacing) / candidate - pad >= min_view:
            columns = candidate
    cell_w = (width - (columns - 1) * spacing) / columns
    return columns, overhead + max(min_view, min(cell_w - pad, 1.5 * min_view))
