"""The Scan view: a finished scan's table (sortable, filterable), a histogram of a chosen column over the
rows shown, and the actions that link it to the rest of the window (open a row in the canvas, filter the
gallery by the rows shown)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from kdx_gui.scan.scan_table_model import THUMBNAIL_SIDE, ScanTableModel, numeric_column
from kdx_gui.widgets.plots import plain_axes

HISTOGRAM_BINS = 30
DEFAULT_HISTOGRAM = ("gradcam_student_energy", "gradcam_ts_pearson", "kl_teacher_student")
# Bookkeeping columns, hidden in the table (they stay in the Parquet and CSV files).
HIDDEN_COLUMNS = frozenset({"file", "sha256", "maps_shard", "maps_offset", "grid_height", "grid_width", "width",
                            "height", "has_mask", "notes", "label"})


class ScanView(QWidget):
    """Table and histogram of one scan; ``rowOpened(file)`` when the user opens a row, ``galleryFilter
    (title, files)`` when they ask the gallery to show the rows shown."""

    rowOpened = Signal(str)
    galleryFilter = Signal(str, list)
    openRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder: str | None = None
        self.model = ScanTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setIconSize(QSize(THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        self.table.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIDE + 4)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.activated.connect(self._activated)
        self.table.clicked.connect(self._activated)

        self.title = QLabel("No scan open: Analysis ▸ Scan dataset…, or Open scan…")
        self.title.setWordWrap(True)
        self.open_button = QPushButton("Open scan…")
        self.open_button.clicked.connect(self.openRequested)
        self.filter_box = QComboBox()
        self.filter_box.currentIndexChanged.connect(self._filter_changed)
        self.search = QLineEdit()
        self.search.setPlaceholderText("path contains…")
        self.search.textChanged.connect(self._filter_changed)
        self.count = QLabel()
        self.gallery_button = QPushButton("Show in gallery")
        self.gallery_button.setToolTip("Filter the gallery to the rows shown (their images are added to it)")
        self.gallery_button.clicked.connect(self._to_gallery)
        self.histogram_column = QComboBox()
        self.histogram_column.currentIndexChanged.connect(self.draw_histogram)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(120)
        plain_axes(self.plot.getPlotItem())
        self.histogram_note = QLabel()

        controls = QHBoxLayout()
        controls.addWidget(self.open_button)
        controls.addWidget(QLabel("Show"))
        controls.addWidget(self.filter_box, 1)
        controls.addWidget(self.search, 1)
        controls.addWidget(self.count)
        controls.addWidget(self.gallery_button)
        histogram = QWidget()
        histogram_layout = QVBoxLayout(histogram)
        histogram_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Histogram of"))
        row.addWidget(self.histogram_column, 1)
        histogram_layout.addLayout(row)
        histogram_layout.addWidget(self.plot, 1)
        histogram_layout.addWidget(self.histogram_note)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(histogram)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addLayout(controls)
        layout.addWidget(splitter, 1)
        self._set_enabled(False)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.filter_box, self.search, self.gallery_button, self.histogram_column):
            widget.setEnabled(enabled)

    def show_scan(self, folder: str, columns: dict[str, list]) -> None:
        """Show a scan's columns (read by the engine in a job)."""
        self.folder = folder
        self.model.set_columns(columns)
        self.filter_box.blockSignals(True)
        self.filter_box.clear()
        for key, title in self.model.available_filters().items():
            self.filter_box.addItem(title, key)
        self.filter_box.blockSignals(False)
        self.histogram_column.blockSignals(True)
        self.histogram_column.clear()
        numeric = [name for name in columns if _is_numeric(columns[name])]
        self.histogram_column.addItems(numeric)
        chosen = next((name for name in DEFAULT_HISTOGRAM if name in numeric), numeric[0] if numeric else None)
        if chosen:
            self.histogram_column.setCurrentText(chosen)
        self.histogram_column.blockSignals(False)
        self.title.setText(f"Scan {Path(folder).name}: {self.model.n_rows} rows, {len(columns)} columns ({folder})")
        self._set_enabled(True)
        for column, name in enumerate(self.model.names):
            self.table.setColumnHidden(column, name in HIDDEN_COLUMNS)
        self.table.horizontalHeader().setResizeContentsPrecision(40)  # sample rows: a 20,000-row table stays quick
        self.table.resizeColumnsToContents()
        self._update_count()
        self.draw_histogram()

    def set_filter(self, key: str) -> None:
        index = self.filter_box.findData(key)
        if index < 0:
            raise ValueError(f"this scan has no filter {key!r}")
        self.filter_box.setCurrentIndex(index)

    def _filter_changed(self, *_args) -> None:
        self.model.set_filter(self.filter_box.currentData() or "all", self.search.text())
        self._update_count()
        self.draw_histogram()

    def _update_count(self) -> None:
        shown, total = self.model.rowCount(), self.model.n_rows
        self.count.setText(f"{shown} of {total} rows" if shown != total else f"{total} rows")

    def histogram_counts(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(counts, bin edges, undefined values) of the chosen column over the rows shown."""
        name = self.histogram_column.currentText()
        if not name:
            return np.zeros(0), np.zeros(0), 0
        values = numeric_column(self.model.columns, name)[self.model.order]
        finite = values[np.isfinite(values)]
        if not finite.size:
            return np.zeros(0), np.zeros(0), int(values.size)
        counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
        return counts, edges, int(values.size - finite.size)

    def draw_histogram(self, *_args) -> None:
        self.plot.clear()
        counts, edges, undefined = self.histogram_counts()
        name = self.histogram_column.currentText()
        self.plot.setLabel("bottom", name)
        self.plot.setLabel("left", "images")
        if counts.size:
            self.plot.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts, brush="#1f77b4"))
        self.histogram_note.setText(f"{int(counts.sum())} values" + (f", {undefined} undefined (left out)"
                                                                       if undefined else ""))

    def _activated(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        record = self.model.row_record(index.row())
        if record.get("file") and not record.get("error"):
            self.rowOpened.emit(record["file"])

    def _to_gallery(self) -> None:
        self.galleryFilter.emit(f"Scan: {self.filter_box.currentText()}", self.model.visible_paths())


def _is_numeric(values: list) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


class ScanDock(QDockWidget):
    """The Scan view as a dock of the main window."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Scan", parent)
        self.setObjectName("scan_dock")
        self.view = ScanView(self)
        self.setWidget(self.view)
