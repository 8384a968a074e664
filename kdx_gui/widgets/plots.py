"""Small pyqtgraph plots shared by the metrics views: a labelled heatmap and an interval line plot."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QFont, QTextOption

from kdx_engine.figures.panel_rendering import colormap_lut


def configure_pyqtgraph() -> None:
    """Row-major images (like numpy), light background to match the window."""
    pg.setConfigOptions(imageAxisOrder="row-major", background="w", foreground="k", antialias=True)


SMALL_FONT = QFont()
SMALL_FONT.setPointSize(8)


def plain_axes(plot_item: pg.PlotItem) -> None:
    """Axis numbers as they are: no "(×0.001)" SI rescaling of values that live in [−1, 1]."""
    for name in ("left", "bottom"):
        plot_item.getAxis(name).enableAutoSIPrefix(False)


def colour_map(name: str) -> pg.ColorMap:
    lut = colormap_lut(name)
    return pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut)


class FittedLabel(pg.LabelItem):
    """Centred text that wraps to the width it is given within a fixed height, so text never widens its
    cell (equal cells keep linked zoom exact, grids fit their widget); what does not fit is clipped."""

    def __init__(self, text: str, height: int, words_only: bool = False, **opts):
        self.fixed_height = height
        super().__init__(text, **opts)
        option = QTextOption(Qt.AlignmentFlag.AlignHCenter)
        # long layer names break anywhere; titles only between words
        option.setWrapMode(QTextOption.WrapMode.WordWrap if words_only
                           else QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.item.document().setDefaultTextOption(option)
        self.item.document().setDocumentMargin(1)
        self.setFlag(self.GraphicsItemFlag.ItemClipsChildrenToShape)

    def plain_text(self) -> str:
        return self.item.toPlainText()

    def text_height(self) -> float:
        """The height the text takes at the label's current width (0 when empty)."""
        if not self.plain_text().strip():
            return 0.0
        return float(self.item.document().size().height())

    def text_width(self) -> float:
        """The widest line of the text as laid out (more than the label's width when a word is cut)."""
        return float(self.item.document().idealWidth()) if self.plain_text().strip() else 0.0

    def set_fixed_height(self, height: int) -> None:
        if height != self.fixed_height:
            self.fixed_height = height
            self.updateMin()

    def updateMin(self) -> None:
        height = self.fixed_height
        self.setMinimumSize(0, height)
        self.setMaximumHeight(height)
        self._sizeHint = {Qt.SizeHint.MinimumSize: (0, height), Qt.SizeHint.PreferredSize: (0, height),
                          Qt.SizeHint.MaximumSize: (-1, height), Qt.SizeHint.MinimumDescent: (0, 0)}
        self.updateGeometry()

    def resizeEvent(self, event) -> None:
        width = max(self.rect().width() - 4, 20.0)
        if abs(self.item.textWidth() - width) > 0.5:
            self.item.setTextWidth(width)
        super().resizeEvent(event)



class Heatmap(pg.PlotWidget):
    """A matrix with named rows and columns, each cell's value written on it, and a colour bar."""

    def __init__(self, title: str = "", colormap: str = "viridis", levels: tuple[float, float] = (0.0, 1.0),
                 show_bar: bool = True, parent=None):
        super().__init__(parent)
        self.plot_item: pg.PlotItem = self.getPlotItem()
        self.plot_item.setTitle(title, size="9pt")
        self.plot_item.invertY(True)
        self.plot_item.setAspectLocked(False)
        self.plot_item.setMouseEnabled(False, False)
        self.plot_item.hideButtons()
        plain_axes(self.plot_item)
        self.image = pg.ImageItem()
        self.image.setLookupTable(colour_map(colormap).getLookupTable(nPts=256))
        self.plot_item.addItem(self.image)
        self.levels = levels
        if show_bar:
            self.bar = pg.ColorBarItem(values=levels, colorMap=colour_map(colormap), interactive=False, width=12)
            self.bar.setImageItem(self.image, insert_in=self.plot_item)
        self.texts: list[pg.TextItem] = []
        self.matrix = np.zeros((0, 0))
        self.setMinimumHeight(180)

    def set_matrix(self, values: np.ndarray, rows: list[str], columns: list[str], row_title: str = "",
                   column_title: str = "", cell_texts: list[list[str]] | None = None) -> None:
        self.matrix = np.asarray(values, dtype=float)
        for text in self.texts:
            self.plot_item.removeItem(text)
        self.texts = []
        if self.matrix.size == 0:
            self.image.clear()
            return
        n_rows, n_cols = self.matrix.shape
        self.image.setImage(np.nan_to_num(self.matrix, nan=self.levels[0]), levels=self.levels)
        self.image.setRect(QRectF(0, 0, n_cols, n_rows))
        left, bottom = self.plot_item.getAxis("left"), self.plot_item.getAxis("bottom")
        left.setTicks([[(i + 0.5, name) for i, name in enumerate(rows)]])
        bottom.setTicks([[(j + 0.5, name) for j, name in enumerate(columns)]])
        self.plot_item.setLabel("left", row_title)
        self.plot_item.setLabel("bottom", column_title)
        for i in range(n_rows):
            for j in range(n_cols):
                value = self.matrix[i, j]
                text = cell_texts[i][j] if cell_texts else ("—" if np.isnan(value) else f"{value:.2f}")
                unit = (value - self.levels[0]) / (self.levels[1] - self.levels[0] or 1)
                item = pg.TextItem(text, color="k" if np.isnan(value) or unit > 0.55 else "w", anchor=(0.5, 0.5))
                item.setFont(SMALL_FONT)
                item.setPos(j + 0.5, i + 0.5)
                self.plot_item.addItem(item)
                self.texts.append(item)
        self.plot_item.setRange(xRange=(0, n_cols), yRange=(0, n_rows), padding=0)


DODGE = 0.06


class IntervalPlot(pg.PlotWidget):
    """Lines with 95% interval bars, one per series, over named x positions."""

    def __init__(self, title: str = "", y_label: str = "", parent=None, bounds: tuple[float, float] | None = None):
        """``bounds``: the measure's own range (0…1 for R²*), always shown, so values near 1 are not
        drawn as if they spread over the whole axis."""
        super().__init__(parent)
        self.bounds = bounds
        self.plot_item: pg.PlotItem = self.getPlotItem()
        self.plot_item.setTitle(title, size="9pt")
        self.plot_item.setLabel("left", y_label)
        self.plot_item.showGrid(x=False, y=True, alpha=0.3)
        self.plot_item.setMouseEnabled(False, False)
        self.plot_item.hideButtons()
        plain_axes(self.plot_item)
        self.legend = self.plot_item.addLegend(offset=(10, 5), colCount=3)  # one row along the top
        self.series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.extent = (np.inf, -np.inf)  # lowest and highest value or interval end drawn
        self.setMinimumHeight(170)

    def clear_series(self) -> None:
        self.plot_item.clear()
        self.legend.clear()
        self.series = {}
        self.extent = (np.inf, -np.inf)

    def add_series(self, name: str, x: list[float], values: list[float], low: list[float], high: list[float],
                   colour: str, tick_names: list[str] | None = None) -> None:
        y = np.asarray(values, float)
        # series side by side around each position, so their interval bars do not hide each other
        x_arr = np.asarray(x, float) + DODGE * len(self.series)
        self.series[name] = (np.asarray(x, float), y)
        self.plot_item.addItem(pg.ErrorBarItem(x=x_arr, y=y, top=np.asarray(high, float) - y,
                                               bottom=y - np.asarray(low, float), beam=0.08, pen=pg.mkPen(colour)))
        self.plot_item.plot(x_arr, y, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=7,
                            symbolBrush=colour, symbolPen=colour, name=name)
        names = tick_names if tick_names is not None else [str(int(v)) for v in x]
        self.plot_item.getAxis("bottom").setTicks([list(zip(x, names))])
        finite = np.concatenate([np.asarray(low, float), np.asarray(high, float), y])
        finite = finite[np.isfinite(finite)]
        if finite.size:
            self.extent = (min(self.extent[0], float(finite.min())), max(self.extent[1], float(finite.max())))
        bottom, top = self.extent if self.extent[0] <= self.extent[1] else (0.0, 1.0)
        if self.bounds is not None:
            bottom, top = min(bottom, self.bounds[0]), max(top, self.bounds[1])
        span = top - bottom if top > bottom else 1.0
        self.plot_item.setYRange(bottom - 0.05 * span, top + 0.3 * span, padding=0)  # room for the legend
