"""A read-only table whose contents copy to the clipboard as tab-separated values and save as CSV."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHeaderView,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)


def cell_text(value) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


class CopyableTable(QTableWidget):
    """Ctrl+C (or the context menu) copies the selected rows, or the whole table when none is selected,
    as TSV with a header line."""

    def __init__(self, headers: list[str], parent: QWidget | None = None):
        super().__init__(0, len(headers), parent)
        self.setHorizontalHeaderLabels(headers)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        copy = QAction("Copy as TSV", self)
        copy.setShortcut(QKeySequence.StandardKey.Copy)
        copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy.triggered.connect(self.copy_to_clipboard)
        self.addAction(copy)
        save = QAction("Save as CSV…", self)
        save.triggered.connect(self.save_dialog)
        self.addAction(save)

    def headers(self) -> list[str]:
        return [self.horizontalHeaderItem(c).text() for c in range(self.columnCount())]

    def set_rows(self, rows: list[list]) -> None:
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(cell_text(value))
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)

    def rows(self, selected_only: bool = False) -> list[list[str]]:
        chosen = sorted({index.row() for index in self.selectedIndexes()}) if selected_only else []
        rows = chosen or range(self.rowCount())
        return [[self.item(r, c).text() if self.item(r, c) else "" for c in range(self.columnCount())] for r in rows]

    def to_tsv(self, selected_only: bool = False) -> str:
        lines = ["\t".join(self.headers())] + ["\t".join(row) for row in self.rows(selected_only)]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.headers())
        writer.writerows(self.rows())
        return buffer.getvalue()

    def save_csv(self, path: str) -> None:
        """The whole table as CSV, written atomically."""
        from kdx_engine.atomic_files import atomic_write_text

        atomic_write_text(Path(path), self.to_csv())

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save table as CSV", "table.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            self.save_csv(path)
        except OSError as exc:
            QMessageBox.warning(self, "Save table", f"{Path(path).name}: cannot write ({exc.strerror or exc})")

    def copy_to_clipboard(self) -> str:
        text = self.to_tsv(selected_only=True)
        QGuiApplication.clipboard().setText(text)
        return text
