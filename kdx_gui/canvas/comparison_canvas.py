"""The comparison canvas: Input, Teacher, Student, Base, Distilled, Residual and T − S side by side, one
pyqtgraph view box each, zoom and pan linked, a crosshair reading the value under the cursor in every
panel. It draws ``session.comparison``; a panel without a map says why.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QTextOption
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from kdx_engine.figures.panel_rendering import DIVERGING, colormap_lut, panel_scales, render_panel
from kdx_engine.figures.pixel_scaling import nearest_upscaled

from kdx_gui.state.session import PANEL_KEYS, ROLE_COLOURS, Session
from kdx_gui.widgets.wording import ordinal
from kdx_gui.widgets.layout import choose_grid
from kdx_gui.widgets.plots import FittedLabel

MAX_COLUMNS = 4  # at most 4 × 2 cells (7 panels and the legend); fewer columns where they would be small
MIN_VIEW = 120  # smallest view box side (px) before the canvas scrolls instead of shrinking the panels
PAD = 6  # a cell's width beyond its view box (margins)
DEFAULT_TITLES = {"input": "Input", "teacher": "Teacher", "student": "Student", "base": "Base",
                  "distilled": "Distilled (S|B)", "residual": "Residual (B|S)", "difference": "T − S"}
TITLE_COLOURS = {**ROLE_COLOURS, "input": "#222222", "distilled": "#6a1b9a", "residual": "#ef6c00",
                 "difference": "#37474f"}
MESSAGE_COLOUR = "#5f6368"
NOTE_COLOUR = "#b26a00"
WRAP = 30
TITLE_HEIGHT, SUBTITLE_HEIGHT, NOTE_HEIGHT, READOUT_HEIGHT = 22, 30, 46, 18  # first guesses; fitted to the text


def _label(cell: pg.GraphicsLayout, row: int, height: int, text: str = "", **opts) -> FittedLabel:
    label = FittedLabel(text, height, **opts)
    cell.addItem(label, row=row, col=0)
    return label


class PanelView:
    """One panel: title, subtitle, a view box with the image, a crosshair and a message, and a readout
    (the value under the cursor, else the panel's colour range)."""

    def __init__(self, cell: pg.GraphicsLayout, key: str):
        self.key = key
        self.title = _label(cell, 0, TITLE_HEIGHT, DEFAULT_TITLES[key], words_only=True, size="10pt", bold=True,
                            color=TITLE_COLOURS[key])
        self.subtitle = _label(cell, 1, SUBTITLE_HEIGHT, size="8pt", color="#444444")
        self.view: pg.ViewBox = cell.addViewBox(row=2, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.note = _label(cell, 3, NOTE_HEIGHT, size="7pt", color=NOTE_COLOUR)
        self.readout = _label(cell, 4, READOUT_HEIGHT, size="8pt", color="#222222")
        cell.layout.setRowStretchFactor(2, 10)
        self.image = pg.ImageItem()
        self.view.addItem(self.image)
        self.message = pg.TextItem("", color=MESSAGE_COLOUR, anchor=(0.5, 0.5))
        self.view.addItem(self.message, ignoreBounds=True)
        pen = pg.mkPen((255, 255, 255, 200), width=1, style=Qt.PenStyle.DashLine)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        for line in (self.vline, self.hline):
            line.setVisible(False)
            self.view.addItem(line, ignoreBounds=True)
        self.values: np.ndarray | None = None
        self.kind = "map"
        self.message_text = ""
        self.note_text = ""
        self.readout_text = ""
        self.range_text = ""  # this panel's colour range, shown when the cursor is elsewhere

    @property
    def labels(self) -> tuple[FittedLabel, ...]:
        return self.title, self.subtitle, self.note, self.readout

    def show_message(self, text: str, frame_size: tuple[int, int]) -> None:
        """No map: clear the image and put the reason in the middle of the panel."""
        self.values = None
        self.range_text = ""
        self.image.clear()
        self.message_text = text
        wrapped = "<br>".join(textwrap.wrap(text, WRAP)) if text else ""
        self.message.setHtml(f"<div style='text-align:center; color:{MESSAGE_COLOUR}'>{wrapped}</div>")
        height, width = frame_size
        self.message.setPos(width / 2, height / 2)
        self.message.setVisible(bool(text))

    def show_image(self, rgb: np.ndarray, values: np.ndarray, kind: str) -> None:
        """Draw ``rgb``; a small image (CIFAR's 32 px) as square pixels, upscaled with nearest-neighbour
        whatever the painter's smoothing, still placed on the image's own pixel grid (the crosshair and
        the readout use the unscaled ``values``)."""
        self.values, self.kind = values, kind
        self.message_text = ""
        self.message.setVisible(False)
        self.image.setImage(nearest_upscaled(rgb), autoLevels=False, levels=(0, 255))
        self.image.setRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))

    def set_texts(self, title: str, subtitle: str, note: str | None) -> None:
        """Title, what the map is, and the engine's note on why it is blank or broken (if any)."""
        self.title.setText(title)
        self.subtitle.setText(subtitle)
        self.note_text = f"⚠ {note}" if note else ""
        self.note.setText(self.note_text)

    def set_readout(self, text: str) -> None:
        self.readout_text = text
        shown = " · ".join(t for t in (text, self.range_text) if t) if text and self.kind != "image" else \
            (text or self.range_text)
        self.readout.setText(shown)

    def value_at(self, x: float, y: float) -> str:
        """The value under (x, y) in frame pixels: RGB for the input, the raw map value otherwise."""
        if self.values is None:
            return ""
        row, col = int(np.floor(y)), int(np.floor(x))
        height, width = self.values.shape[:2]
        if not (0 <= row < height and 0 <= col < width):
            return ""
        value = self.values[row, col]
        if self.kind == "image":
            return "RGB " + ", ".join(str(int(v)) for v in value)
        if not np.isfinite(value):
            return "no value (outside the model's crop)"
        return f"value {float(value):+.3g}" if self.kind == "difference" else f"value {float(value):.3g}"


class ComparisonCanvas(pg.GraphicsLayoutWidget):
    """Seven linked panels and a colour bar; redraws whenever the session's comparison or view changes.

    The cells reflow to the room there is (up to 4 columns, each view box at least ``MIN_VIEW`` px; in a
    ``CanvasPane`` the canvas scrolls where even one column would be smaller) and the labels' heights
    follow their text, the same in every panel so that the view boxes stay equal."""

    crosshairMoved = Signal(float, float)

    def __init__(self, session: Session, parent=None):
        super().__init__(parent, show=False, size=None, title=None)
        self.setBackground("w")
        self.session = session
        self.panels: dict[str, PanelView] = {}
        self.frame_size = (32, 32)
        self.columns = MAX_COLUMNS
        self.cell_height: float | None = None  # None: share the viewport's height
        self.cells: list[pg.GraphicsLayout] = []
        for key in PANEL_KEYS:
            cell = self.ci.addLayout()
            cell.layout.setContentsMargins(1, 1, 1, 1)
            cell.layout.setSpacing(1)
            self.cells.append(cell)
            self.panels[key] = PanelView(cell, key)
        first = self.panels["input"].view
        for panel in list(self.panels.values())[1:]:
            panel.view.setXLink(first)
            panel.view.setYLink(first)
        legend = self.ci.addLayout()
        legend.layout.setContentsMargins(1, 1, 1, 1)
        self.legend = legend
        self.cells.append(legend)
        self.status = _label(legend, 0, TITLE_HEIGHT, size="9pt", color="#222222")
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=self._colour_map(session.settings.colormap),
                                          interactive=False, orientation="horizontal", width=14)
        legend.addItem(self.colour_bar, row=1, col=0)
        self.scale_label = _label(legend, 2, 3 * READOUT_HEIGHT, size="8pt", color="#444444")
        self.position_label = _label(legend, 3, READOUT_HEIGHT, size="8pt", color="#222222")
        self.bar_levels = (0.0, 1.0)
        self._place_cells()
        self._fit_pending = False
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        for signal in (session.comparisonChanged, session.settingsChanged, session.currentChanged,
                       session.modelChanged, session.engineReady):
            signal.connect(self.redraw)
        session.analysingChanged.connect(self._analysing_changed)
        self.redraw()
        self.reset_zoom()

    # --- layout --------------------------------------------------------------------------------
    def _place_cells(self) -> None:
        """Put the cells in ``self.columns`` columns (the legend last)."""
        layout = self.ci.layout
        for cell in self.cells:
            layout.removeItem(cell)
        for index, cell in enumerate(self.cells):
            layout.addItem(cell, index // self.columns, index % self.columns)
        for column in range(MAX_COLUMNS * 2):
            layout.setColumnStretchFactor(column, 1 if column < self.columns else 0)
        for row in range(len(self.cells)):
            layout.setRowStretchFactor(row, 1 if row < self.rows else 0)

    @property
    def rows(self) -> int:
        return math.ceil(len(self.cells) / self.columns)

    def label_overhead(self) -> float:
        """A panel cell's height beyond its view box: the labels and the cell's spacing."""
        panel = self.panels["input"]
        spacing = self.cells[0].layout.verticalSpacing()
        top, bottom = self.cells[0].layout.getContentsMargins()[1::2]
        return sum(label.fixed_height for label in panel.labels) + 4 * max(spacing, 0) + top + bottom

    def fit_to(self, width: int, height: int) -> int:
        """Choose the columns for ``width`` × ``height`` of room; returns the height the canvas needs
        (more than ``height`` when it has to scroll)."""
        layout = self.ci.layout
        left, top, right, bottom = layout.getContentsMargins()
        spacing = max(layout.horizontalSpacing(), layout.verticalSpacing(), 0)
        columns, cell_h = choose_grid(width - left - right, height - top - bottom, len(self.cells),
                                      self.label_overhead(), spacing, MAX_COLUMNS, MIN_VIEW, PAD)
        if columns != self.columns:
            self.columns = columns
            self._place_cells()
        rows = self.rows
        needed = math.ceil(rows * cell_h + (rows - 1) * spacing + top + bottom)
        self.cell_height = cell_h if needed > height + 1 else None
        return needed if self.cell_height is not None else 0

    def resizeEvent(self, event) -> None:
        """Give every cell exactly the same size: with locked aspect, equal view boxes are what makes
        linked zoom show the same region in every panel."""
        if not getattr(self, "cells", None):  # resized while the base class is still being built
            super().resizeEvent(event)
            return
        if self._pane() is None:  # a CanvasPane fits the canvas to its scroll area's viewport
            self.fit_to(self.viewport().width(), self.viewport().height())
        self._size_cells()
        super().resizeEvent(event)
        self._schedule_fit()
        QTimer.singleShot(0, self, self.reset_zoom)  # once the new layout is in place; never after self is gone

    def _size_cells(self) -> None:
        layout = self.ci.layout
        left, top, right, bottom = layout.getContentsMargins()
        rows, columns = self.rows, self.columns
        width = (self.viewport().width() - left - right - (columns - 1) * layout.horizontalSpacing()) // columns
        height = (self.viewport().height() - top - bottom - (rows - 1) * layout.verticalSpacing()) // rows
        if self.cell_height is not None:
            height = min(height, int(self.cell_height))
        for cell in self.cells:
            cell.setMinimumSize(max(width, 10), max(height, 10))
            cell.setMaximumSize(max(width, 10), max(height, 10))

    def _schedule_fit(self) -> None:
        if not getattr(self, "_fit_pending", True):
            self._fit_pending = True
            QTimer.singleShot(0, self, self.fit_labels)

    def fit_labels(self) -> bool:
        """Give each row of labels (titles, subtitles, notes, readouts) the height its longest text takes
        at the current width, the same in every panel; True when a height changed."""
        self._fit_pending = False
        changed = False
        panels = list(self.panels.values())
        for row, minimum in enumerate((16, 0, 0, 14)):
            needed = max([p.labels[row].text_height() for p in panels] + [minimum])
            height = int(math.ceil(needed)) + (2 if needed else 0)
            for panel in panels:
                if panel.labels[row].fixed_height != height:
                    panel.labels[row].set_fixed_height(height)
                    changed = True
        for label, minimum in ((self.status, 14), (self.scale_label, 14), (self.position_label, 14)):
            height = int(math.ceil(max(label.text_height(), minimum))) + 2
            if label.fixed_height != height:
                label.set_fixed_height(height)
                changed = True
        if changed:
            pane = self._pane()
            if pane is not None:
                pane.refit()
            else:
                self.fit_to(self.viewport().width(), self.viewport().height())
                self._size_cells()
            self.ci.layout.invalidate()
        return changed

    def _pane(self) -> "CanvasPane | None":
        widget = self.parentWidget()
        while widget is not None and not isinstance(widget, CanvasPane):
            widget = widget.parentWidget()
        return widget

    @property
    def views(self) -> dict[str, pg.ViewBox]:
        return {key: panel.view for key, panel in self.panels.items()}

    def reset_zoom(self) -> None:
        height, width = self.frame_size
        self.panels["input"].view.setRange(xRange=(0, width), yRange=(0, height), padding=0.02)

    # --- drawing -------------------------------------------------------------------------------
    def redraw(self, *_args) -> None:
        comparison = self.session.comparison
        current = self.session.current_image
        if comparison is None or current is None or comparison.image_id != current.id:
            self._draw_placeholders(current)
            if comparison is None or current is None:
                self._schedule_fit()
                return
        self._draw(comparison, stale=comparison.image_id != current.id)
        self._schedule_fit()

    def _placeholder_text(self, current) -> str:
        if not self.session.engine_ready:
            return "loading engine…"
        if current is None:
            return "no image: drop images or folders on the gallery, or paste one (Ctrl+V)"
        return "computing…"

    def _draw_placeholders(self, current) -> None:
        text = self._placeholder_text(current)
        for key, panel in self.panels.items():
            panel.set_texts(DEFAULT_TITLES[key], "", None)
            panel.show_message(text, self.frame_size)
            panel.set_readout("")
        self.status.setText(text)

    def _draw(self, comparison, stale: bool) -> None:
        settings = self.session.settings
        frame = comparison.panels["input"].values
        resized = frame.shape[:2] != self.frame_size
        self.frame_size = frame.shape[:2]
        scales = panel_scales(comparison.panels, settings.shared_scale)
        for key, panel in self.panels.items():
            result = comparison.panels.get(key)
            if result is None:
                continue
            panel.set_texts(result.title, result.subtitle, result.note if result.values is not None else None)
            if result.values is None:
                panel.show_message(result.message or "no map", self.frame_size)
            elif result.kind == "image":
                panel.show_image(result.values, result.values, "image")
                panel.range_text = ""
            else:
                rgb = render_panel(frame, result.values, result.kind, scales[key], settings.colormap,
                                   settings.opacity, settings.threshold)
                panel.show_image(rgb, result.values, result.kind)
                scale = scales[key]
                panel.range_text = (f"scale ±{scale.high:.3g}" if result.kind == "difference"
                                    else f"scale {scale.low:.3g}…{scale.high:.3g}")
            panel.set_readout(panel.readout_text if panel.values is not None else "")
        bar_key = next((k for k in ("teacher", "student", "base") if k in scales), None)
        self.colour_bar.setColorMap(self._colour_map(settings.colormap))
        if bar_key is not None:
            low, high = scales[bar_key].low, scales[bar_key].high
            self.set_bar_levels(low, high if high > low else low + 1)
        if settings.shared_scale:
            mode = "shared scale per group (0…max); bar = the models' maps"
        elif bar_key is not None:
            mode = f"per-panel scale: bar = {DEFAULT_TITLES[bar_key]}; each panel's range is under it"
        else:
            mode = "per-panel min–max scale"
        threshold = f"; below the {ordinal(round(settings.threshold))} percentile hidden" \
            if settings.threshold > 0 else ""
        self.scale_label.setText(f"{mode}{threshold}<br>T − S: {DIVERGING}, blue = Student higher")
        self.status.setText("updating…" if stale or self.session.analysing else "")
        if resized:
            self.reset_zoom()

    def set_bar_levels(self, low: float, high: float) -> None:
        """The colour bar's range, with ticks at its ends only (and the middle where there is room), so
        the numbers never run into each other."""
        self.bar_levels = (low, high)
        self.colour_bar.setLevels((low, high))
        self._bar_ticks()

    def _bar_ticks(self) -> None:
        low, high = self.bar_levels
        width = self.colour_bar.boundingRect().width()
        fractions = (0.2, 0.5, 0.8) if width > 150 else (0.2, 0.8)  # inside the ends, where labels show
        ticks = [float(f"{low + f * (high - low):.2g}") for f in fractions]
        self.colour_bar.axis.setTicks([[(v, f"{v:.2g}") for v in ticks], []])

    def _analysing_changed(self, analysing: bool) -> None:
        """Say "updating…" over a drawn comparison while the engine recomputes it (no redraw)."""
        comparison, current = self.session.comparison, self.session.current_image
        if comparison is not None and current is not None and comparison.image_id == current.id:
            self.status.setText("updating…" if analysing else "")

    @staticmethod
    def _colour_map(name: str) -> pg.ColorMap:
        lut = colormap_lut(name)
        return pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut)

    # --- crosshair -----------------------------------------------------------------------------
    def _mouse_moved(self, scene_pos: QPointF) -> None:
        for panel in self.panels.values():
            if panel.view.sceneBoundingRect().contains(scene_pos):
                point = panel.view.mapSceneToView(scene_pos)
                self.set_crosshair(point.x(), point.y())
                return

    def set_crosshair(self, x: float, y: float) -> None:
        """Put the crosshair at frame position (x, y) in every panel and read each panel's value there."""
        height, width = self.frame_size
        inside = 0 <= x < width and 0 <= y < height
        for key, panel in self.panels.items():
            panel.vline.setPos(x)
            panel.hline.setPos(y)
            panel.vline.setVisible(inside)
            panel.hline.setVisible(inside)
            panel.set_readout(panel.value_at(x, y) if inside else "")
        self.position_label.setText(f"cursor x={int(x)}, y={int(y)}" if inside else "")
        self.crosshairMoved.emit(x, y)

    def readouts(self) -> dict[str, str]:
        return {key: panel.readout_text for key, panel in self.panels.items()}


class CanvasPane(QWidget):
    """The canvas under a line of notes on the current image (conversions such as CMYK, 16-bit or palette,
    and preprocessing differences between the models), in a scroll area that scrolls only when the
    panels would otherwise be smaller than ``MIN_VIEW``."""

    def __init__(self, canvas: ComparisonCanvas, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = canvas
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet(f"color: {NOTE_COLOUR}; padding: 1px 4px;")
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes.setVisible(False)
        self.scroll = QScrollArea()
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(canvas)
        self.scroll.viewport().installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.notes)
        layout.addWidget(self.scroll, 1)
        canvas.session.comparisonChanged.connect(self.show_notes)
        canvas.session.currentChanged.connect(self.show_notes)
        self.show_notes()

    def show_notes(self, *_args) -> None:
        comparison, current = self.canvas.session.comparison, self.canvas.session.current_image
        notes = list(getattr(comparison, "notes", ()) or ()) if comparison is not None and current is not None \
            and comparison.image_id == current.id else []
        self.notes.setText("  ".join(f"⚠ {note}" for note in notes))
        self.notes.setToolTip("\n".join(notes))
        self.notes.setVisible(bool(notes))

    def eventFilter(self, watched, event) -> bool:
        if watched is self.scroll.viewport() and event.type() == event.Type.Resize:
            self.refit()
        return False

    def refit(self) -> None:
        """Choose the canvas's columns for the viewport, and let it grow past it (scroll) if it must."""
        viewport = self.scroll.viewport()
        scrollbar = self.scroll.verticalScrollBar()
        width = viewport.width() + (scrollbar.width() if scrollbar.isVisible() else 0)
        needed = self.canvas.fit_to(width, viewport.height())
        if needed:  # scrolling: the bar takes some width
            needed = self.canvas.fit_to(width - scrollbar.sizeHint().width(), viewport.height())
        self.canvas.setMinimumHeight(needed)
        self.canvas._size_cells()
