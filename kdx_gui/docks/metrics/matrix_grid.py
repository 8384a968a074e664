"""Pieces shared by the VAM and KDExplainer views: a grid of small titled heatmaps, the checkpoint
picker, and the reasons why checkpoints hold no attention or routing."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

from kdx_engine.figures.panel_rendering import colormap_lut
from kdx_gui.state.session import AttentionRecord, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.layout import headers_over_views
from kdx_gui.widgets.plots import SMALL_FONT, FittedLabel

GRID_COLUMNS = 3
MAX_WRITTEN, MAX_WRITTEN_COLUMNS = 4, 3  # cell values are written on small matrices only, where they fit


class MatrixGrid(pg.GraphicsLayoutWidget):
    """Small titled heatmaps (values 0…1) in a grid, each cell's value written when the matrix is small."""

    def __init__(self, columns: int = GRID_COLUMNS, write_values: bool = True, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.columns = columns
        self.write_values = write_values
        self.lut = colormap_lut("viridis")
        self.titles: list[str] = []
        self.setMinimumHeight(160)

    def set_matrices(self, items: list[tuple[str, np.ndarray, str]]) -> None:
        """``items``: (title, matrix, axis note) per heatmap."""
        self.clear()
        self.titles = [title for title, _, _ in items]
        columns = max(1, min(self.columns, len(items)))
        for column in range(columns):
            self.ci.layout.setColumnStretchFactor(column, 1)
        for index, (title, matrix, note) in enumerate(items):
            cell = self.addLayout(row=index // columns, col=index % columns)
            cell.addItem(FittedLabel(title, 30, size="8pt", color="#222222"), row=0, col=0)
            view = cell.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMenu=False)
            view.setMouseEnabled(False, False)
            image = pg.ImageItem(matrix, levels=(0.0, 1.0), lut=self.lut)
            image.setRect(QRectF(0, 0, matrix.shape[1], matrix.shape[0]))
            view.addItem(image)
            if self.write_values and matrix.shape[0] <= MAX_WRITTEN and matrix.shape[1] <= MAX_WRITTEN_COLUMNS:
                for (i, j), value in np.ndenumerate(matrix):
                    text = pg.TextItem(f"{value:.2f}", color="k" if value > 0.55 else "w", anchor=(0.5, 0.5))
                    text.setFont(SMALL_FONT)
                    text.setPos(j + 0.5, i + 0.5)
                    view.addItem(text)
            cell.addItem(FittedLabel(note, 16, size="8pt", color="#555555"), row=2, col=0)


class CheckpointPicker(QWidget):
    """Which checkpoint a view shows, and a button to add another checkpoint file."""

    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.settings = session, settings
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(24)
        self.add_button = QPushButton("Add checkpoint…")
        self.add_button.setToolTip("A VAM or KDExplainer checkpoint to show here (it does not take a model slot)")
        self.add_button.clicked.connect(self.add_dialog)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Model"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.add_button)

    def add_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a VAM or KDExplainer checkpoint",
                                              self.settings.last_folder("models"),
                                              "Checkpoints (*.pt *.pth *.pth.tar *.ckpt);;All files (*)")
        if path:
            self.settings.remember_folder("models", path)
            self.session.add_checkpoint(path)

    def set_names(self, names: list[str]) -> None:
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        if current in names:
            self.combo.setCurrentText(current)
        self.combo.blockSignals(False)


class AttentionTab(QWidget):
    """A tab drawn from ``session.attention``: a checkpoint picker, a message line, then its views in a
    vertical splitter. Subclasses build the views, call ``lay_out`` and define ``refresh`` (all
    records) and ``draw_picked`` (the picked one)."""

    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.picker = CheckpointPicker(session, settings)
        self.picker.combo.currentIndexChanged.connect(self.draw_picked)
        self.message = QLabel()
        self.message.setWordWrap(True)

    def lay_out(self, views: list[QWidget], sizes: list[int] | None = None) -> None:
        """Put the views under the picker and the message, and follow the session from now on."""
        headers_over_views(self, [self.picker, self.message], views, sizes)
        self.session.attentionChanged.connect(self.refresh)
        self.session.engineReady.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args) -> None:
        raise NotImplementedError

    def draw_picked(self, *_args) -> None:
        raise NotImplementedError


def reasons(records: dict[str, AttentionRecord], field: str) -> str:
    return "; ".join(f"{name}: {getattr(r, field)}" for name, r in records.items())
