"""The comparison canvas: Input, Teacher, Student, Base, Distilled, Residual and T − S side by side, one
pyqtgraph view box each, zoom and pan linked, a crosshair reading the value under the cursor in every
panel. It draws ``session.comparison``; a panel without a map says why.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal

from kdx_engine.figures.panel_rendering import DIVERGING, colormap_lut, panel_scales, render_panel

from kdx_gui.state.session import PANEL_KEYS, ROLE_COLOURS, Session
from kdx_gui.widgets.plots import FittedLabel

COLUMNS = 4
DEFAULT_TITLES = {"input": "Input", "teacher": "Teacher", "student": "Student", "base": "Base",
                  "distilled": "Distilled (S|B)", "residual": "Residual (B|S)", "difference": "T − S"}
TITLE_COLOURS = {**ROLE_COLOURS, "input": "#222222", "distilled": "#6a1b9a", "residual": "#ef6c00",
                 "difference": "#37474f"}
MESSAGE_COLOUR = "#5f6368"
NOTE_COLOUR = "#b26a00"
WRAP = 30
TITLE_HEIGHT, SUBTITLE_HEIGHT, NOTE_HEIGHT, READOUT_HEIGHT = 22, 30, 46, 18


def _label(cell: pg.GraphicsLayout, row: int, height: int, text: str = "", **opts) -> FittedLabel:
    label = FittedLabel(text, height, **opts)
    cell.addItem(label, row=row, col=0)
    return label


class PanelView:
    """One panel: title, subtitle, a view box with the image, a crosshair and a message, and a readout."""

    def __init__(self, cell: pg.GraphicsLayout, key: str):
        self.key = key
        self.title = _label(cell, 0, TITLE_HEIGHT, DEFAULT_TITLES[key], size="11pt", bold=True,
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

    def show_message(self, text: str, frame_size: tuple[int, int]) -> None:
        """No map: clear the image and put the reason in the middle of the panel."""
        self.values = None
        self.image.clear()
        self.message_text = text
        wrapped = "<br>".join(textwrap.wrap(text, WRAP)) if text else ""
        self.message.setHtml(f"<div style='text-align:center; color:{MESSAGE_COLOUR}'>{wrapped}</div>")
        height, width = frame_size
        self.message.setPos(width / 2, height / 2)
        self.message.setVisible(bool(text))

    def show_image(self, rgb: np.ndarray, values: np.ndarray, kind: str) -> None:
        self.values, self.kind = values, kind
        self.message_text = ""
        self.message.setVisible(False)
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.image.setRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))

    def set_texts(self, title: str, subtitle: str, note: str | None) -> None:
        """Title, what the map is, and the engine's note on why it is blank or broken (if any)."""
        self.title.setText(title)
        self.subtitle.setText(subtitle)
        self.note_text = f"⚠ {note}" if note else ""
        self.note.setText(self.note_text)

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
    """Seven linked panels and a colour bar; redraws whenever the session's comparison or view changes."""

    crosshairMoved = Signal(float, float)

    def __init__(self, session: Session, parent=None):
        super().__init__(parent, show=False, size=None, title=None)
        self.setBackground("w")
        self.session = session
        self.panels: dict[str, PanelView] = {}
        self.frame_size = (32, 32)
        self.cells: list[pg.GraphicsLayout] = []
        for index, key in enumerate(PANEL_KEYS):
            cell = self.ci.addLayout(row=index // COLUMNS, col=index % COLUMNS)
            self.cells.append(cell)
            self.panels[key] = PanelView(cell, key)
        first = self.panels["input"].view
        for panel in list(self.panels.values())[1:]:
            panel.view.setXLink(first)
            panel.view.setYLink(first)
        legend = self.ci.addLayout(row=1, col=3)
        self.cells.append(legend)
        self.status = _label(legend, 0, TITLE_HEIGHT, size="9pt", color="#222222")
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=self._colour_map(session.settings.colormap),
                                          interactive=False, orientation="horizontal", width=14)
        legend.addItem(self.colour_bar, row=1, col=0)
        self.scale_label = _label(legend, 2, 3 * READOUT_HEIGHT, size="8pt", color="#444444")
        self.position_label = _label(legend, 3, READOUT_HEIGHT, size="8pt", color="#222222")
        for column in range(COLUMNS):
            self.ci.layout.setColumnStretchFactor(column, 1)
        for row in range(2):
            self.ci.layout.setRowStretchFactor(row, 1)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        for signal in (session.comparisonChanged, session.settingsChanged, session.currentChanged,
                       session.modelChanged, session.engineReady):
            signal.connect(self.redraw)
        session.analysingChanged.connect(self._analysing_changed)
        self.redraw()
        self.reset_zoom()

    def resizeEvent(self, event) -> None:
        """Give every cell exactly the same size: with locked aspect, equal view boxes are what makes
        linked zoom show the same region in every panel."""
        if not getattr(self, "cells", None):  # resized while the base class is still being built
            super().resizeEvent(event)
            return
        layout = self.ci.layout
        left, top, right, bottom = layout.getContentsMargins()
        rows = (len(self.cells) + COLUMNS - 1) // COLUMNS
        width = (self.viewport().width() - left - right - (COLUMNS - 1) * layout.horizontalSpacing()) // COLUMNS
        height = (self.viewport().height() - top - bottom - (rows - 1) * layout.verticalSpacing()) // rows
        for cell in self.cells:
            cell.setMinimumSize(max(width, 10), max(height, 10))
            cell.setMaximumSize(max(width, 10), max(height, 10))
        super().resizeEvent(event)
        QTimer.singleShot(0, self.reset_zoom)  # once the new layout is in place

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
                return
        self._draw(comparison, stale=comparison.image_id != current.id)

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
            panel.readout.setText("")
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
            else:
                rgb = render_panel(frame, result.values, result.kind, scales[key], settings.colormap,
                                   settings.opacity, settings.threshold)
                panel.show_image(rgb, result.values, result.kind)
        cam_scale = next((scales[k] for k in ("teacher", "student", "base") if k in scales), None)
        self.colour_bar.setColorMap(self._colour_map(settings.colormap))
        if cam_scale is not None:
            self.colour_bar.setLevels((cam_scale.low, cam_scale.high if cam_scale.high > cam_scale.low else
                                       cam_scale.low + 1))
        mode = "shared scale per group (0…max)" if settings.shared_scale else \
            "per-panel min–max scale (bar: the first model's map)"
        threshold = f"; below the {settings.threshold:.0f}th percentile hidden" if settings.threshold > 0 else ""
        self.scale_label.setText(f"{mode}{threshold}<br>T − S: {DIVERGING}, blue = Student higher")
        self.status.setText("updating…" if stale or self.session.analysing else "")
        if resized:
            self.reset_zoom()

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
            panel.readout_text = panel.value_at(x, y) if inside else ""
            panel.readout.setText(panel.readout_text)
        self.position_label.setText(f"cursor x={int(x)}, y={int(y)}" if inside else "")
        self.crosshairMoved.emit(x, y)

    def readouts(self) -> dict[str, str]:
        return {key: panel.readout_text for key, panel in self.panels.items()}
