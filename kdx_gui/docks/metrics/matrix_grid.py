"""Pieces shared by the VAM and KDExplainer views: a grid of small titled heatmaps, the checkpoint
picker, and the reasons why checkpoints hold no attention or routing."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QWidget

from kdx_engine.figures.panel_rendering import colormap_lut
from kdx_gui.state.session import AttentionRecord, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.layout import choose_grid, headers_over_views
from kdx_gui.widgets.plots import SMALL_FONT, FittedLabel

GRID_COLUMNS = 3
MAX_WRITTEN, MAX_WRITTEN_COLUMNS = 4, 3  # cell values are written on small matrices only, where they fit


MIN_CELL_WIDTH = 80  # narrower grids use fewer columns
TITLE_HEIGHT, NOTE_HEIGHT, BAR_HEIGHT = 30, 16, 56  # a title's first height; fitted to the longest
MIN_HEATMAP = 56  # smallest heatmap side (px) before the grid scrolls
BREAKS = str.maketrans({".": ".\u200b", "_": "_\u200b", "/": "/\u200b", "-": "-\u200b"})


def breakable(title: str) -> str:
    """A layer name that may wrap after its dots, underscores and dashes (a zero-width space after each),
    rather than in the middle of a word."""
    return title.translate(BREAKS)


class MatrixGrid(pg.GraphicsLayoutWidget):
    """Small titled heatmaps (values 0…1) in a grid, each cell's value written when the matrix is small, and
    one colour bar for all of them. The columns follow the width (at least ``MIN_CELL_WIDTH`` px each)."""

    def __init__(self, columns: int = GRID_COLUMNS, write_values: bool = True, parent=None,
                 bar_label: str = "value (0…1)"):
        super().__init__(parent)
        self.setBackground("w")
        self.columns = columns
        self.write_values = write_values
        self.lut = colormap_lut("viridis")
        self.bar_label = bar_label
        self.titles: list[str] = []
        self.title_labels: list[FittedLabel] = []
        self.matrices: list[tuple[str, np.ndarray, str]] = []
        self.bar: pg.ColorBarItem | None = None
        self.shown_columns = 0
        self.title_height = TITLE_HEIGHT
        self.room: tuple[int, int] | None = None  # the viewport of its GridScroll, once in one
        self.setMinimumHeight(0)

    def _grid_for(self, width: int, height: int) -> tuple[int, float]:
        n = len(self.matrices)
        most = max(1, min(n, width // max(MIN_CELL_WIDTH, self.widest_word() + 16), max(self.columns, 6)))
        return choose_grid(width - 8, height - BAR_HEIGHT - 8, n, self.title_height + NOTE_HEIGHT + 10, 4,
                           max_columns=most, min_view=MIN_HEATMAP)

    def columns_for(self, width: int, height: int | None = None) -> int:
        """The columns that give the largest heatmaps in ``width`` × ``height`` (cells ≥ MIN_CELL_WIDTH)."""
        if not self.matrices:
            return 1
        return self._grid_for(width, self.height() if height is None else height)[0]

    def fit_to(self, width: int, height: int) -> None:
        """In a ``GridScroll``: the columns for its viewport, and the height the heatmaps need (it scrolls
        when that is more than the viewport has)."""
        self.room = (width, height)
        if not self.matrices:
            self.setMinimumHeight(0)
            return
        columns, cell_h = self._grid_for(width, height)
        rows = (len(self.matrices) + columns - 1) // columns
        needed = int(rows * (cell_h + 4) + BAR_HEIGHT + 12)
        self.setMinimumHeight(needed if needed > height else 0)
        if columns != self.shown_columns:
            self._draw()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if getattr(self, "matrices", None) and getattr(self, "room", None) is None \
                and self.columns_for(self.width()) != self.shown_columns:
            self._draw()

    def widest_word(self) -> int:
        """The widest piece of a title between its break points (px, at the titles' 8 pt)."""
        font = QFont()
        font.setPointSize(8)
        metrics = QFontMetrics(font)
        pieces = [piece for title, _, _ in self.matrices for word in breakable(title).split()
                  for piece in word.split("\u200b")]
        return max([metrics.horizontalAdvance(piece) for piece in pieces] + [0])

    def wrapped(self) -> "GridScroll":
        """This grid in a scroll area that fits it to its width and scrolls when the heatmaps would be
        smaller than ``MIN_HEATMAP``."""
        return GridScroll(self)

    def _fit_titles(self) -> None:
        """All titles as tall as the longest one needs, so none is cut."""
        needed = max([label.text_height() for label in self.title_labels] + [14.0])
        height = int(needed) + 3
        if height != self.title_height:
            self.title_height = height
            for label in self.title_labels:
                label.set_fixed_height(height)
            if self.room is not None:
                self.fit_to(*self.room)

    def set_matrices(self, items: list[tuple[str, np.ndarray, str]]) -> None:
        """``items``: (title, matrix, axis note) per heatmap."""
        self.matrices = list(items)
        self.titles = [title for title, _, _ in items]
        self._draw()

    def _draw(self) -> None:
        self.clear()
        self.title_labels, self.bar = [], None
        items = self.matrices
        columns = self.columns_for(*(self.room or (self.width(), self.height())))
        self.shown_columns = columns
        for column in range(max(columns, self.columns)):
            self.ci.layout.setColumnStretchFactor(column, 1 if column < columns else 0)
        for index, (title, matrix, note) in enumerate(items):
            cell = self.addLayout(row=index // columns, col=index % columns)
            cell.layout.setContentsMargins(2, 2, 2, 2)
            cell.layout.setSpacing(2)
            label = FittedLabel(breakable(title), self.title_height, size="8pt", color="#222222")
            label.setToolTip(title)
            self.title_labels.append(label)
            cell.addItem(label, row=0, col=0)
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
            cell.addItem(FittedLabel(note, NOTE_HEIGHT, size="8pt", color="#555555"), row=2, col=0)
        if items:
            rows = (len(items) + columns - 1) // columns
            legend = self.addLayout(row=rows, col=0, colspan=columns)
            legend.addItem(FittedLabel(self.bar_label, 16, size="8pt", color="#555555"), row=0, col=0)
            self.bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.ColorMap(np.linspace(0, 1, len(self.lut)),
                                                                               self.lut),
                                       interactive=False, orientation="horizontal", width=10)
            self.bar.axis.setTicks([[(v, f"{v:g}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)], []])
            legend.addItem(self.bar, row=1, col=0)
            legend.setMaximumHeight(BAR_HEIGHT)
            legend.setMinimumHeight(BAR_HEIGHT)
        QTimer.singleShot(0, self, self._fit_titles)  # once the labels have their widths; not after self is gone


class GridScroll(QScrollArea):
    """A MatrixGrid that fits the width and scrolls vertically."""

    def __init__(self, grid: MatrixGrid, parent: QWidget | None = None):
        super().__init__(parent)
        self.grid = grid
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(grid)
        self.setMinimumHeight(120)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        bar = self.verticalScrollBar()
        self.grid.fit_to(self.viewport().width() + (bar.width() if bar.isVisible() else 0)
                         - bar.sizeHint().width(), self.viewport().height())


class CheckpointPicker(QWidget):
    """Which checkpoint a view shows, and a button to add another checkpoint file."""

    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.settings = session, settings
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(12)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
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


def reasons(records: dict[str, AttentionRecord], field: str) -> str:
    return "; ".join(f"{name}: {getattr(r, field)}" for name, r in records.items())
