"""Predictions for the current image: each model's top-k classes as bars, KL(T‖S), and how alike the
Teacher's and the Student's maps are; both tables copy as TSV."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QWidget

from kdx_gui.state.session import ROLE_COLOURS, ROLE_TITLES, ROLES, Session
from kdx_gui.widgets.layout import headers_over_views
from kdx_gui.widgets.tables import CopyableTable

TOP_K = 5
MAP_METRICS = {"pearson": "Pearson r", "spearman": "Spearman ρ", "top_iou": "IoU of top 20%",
               "energy_a": "Teacher energy in mask", "energy_b": "Student energy in mask",
               "pointing_a": "Teacher pointing game", "pointing_b": "Student pointing game"}


def top_classes(probabilities: dict[str, np.ndarray], k: int = TOP_K) -> list[int]:
    """The first model's top-k classes, then any other model's top-1 not among them."""
    if not probabilities:
        return []
    first = next(iter(probabilities.values()))
    classes = [int(c) for c in np.argsort(-first)[:k]]
    for probs in probabilities.values():
        best = int(np.argmax(probs))
        if best not in classes:
            classes.append(best)
    return classes


class PredictionView(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.plot = pg.PlotWidget()
        self.plot_item: pg.PlotItem = self.plot.getPlotItem()
        self.plot_item.setLabel("left", "probability")
        self.plot_item.setYRange(0, 1.05, padding=0)
        self.plot_item.setMouseEnabled(False, False)
        self.plot_item.hideButtons()
        self.plot_item.showGrid(y=True, alpha=0.3)
        self.legend = self.plot_item.addLegend(offset=(-10, 10))
        self.plot.setMinimumHeight(170)
        self.kl_label = QLabel()
        self.kl_label.setWordWrap(True)
        self.table = CopyableTable(["model", "rank", "class", "probability"])
        self.map_table = CopyableTable(["T–S map comparison", "value", "note"])
        headers_over_views(self, [self.kl_label], [self.plot, self.table, self.map_table], [220, 160, 120])
        self.bars: dict[str, pg.BarGraphItem] = {}
        session.comparisonChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        comparison = self.session.comparison
        self.plot_item.clear()
        self.legend.clear()
        self.bars = {}
        if comparison is None or not comparison.probabilities:
            self.kl_label.setText("No predictions yet: load a model and pick an image.")
            self.table.set_rows([])
            self.map_table.set_rows([])
            return
        probabilities = {role: comparison.probabilities[role] for role in ROLES if role in comparison.probabilities}
        names = comparison.class_names
        classes = top_classes(probabilities)
        width = 0.8 / len(probabilities)
        for index, (role, probs) in enumerate(probabilities.items()):
            x = np.arange(len(classes)) - 0.4 + width * (index + 0.5)
            bar = pg.BarGraphItem(x=x, height=probs[classes], width=width * 0.95,
                                  brush=ROLE_COLOURS[role], pen=pg.mkPen(ROLE_COLOURS[role]))
            self.plot_item.addItem(bar)
            self.legend.addItem(bar, ROLE_TITLES[role])
            self.bars[role] = bar
        self.plot_item.getAxis("bottom").setTicks([[(i, _name(names, c)) for i, c in enumerate(classes)]])
        self.plot_item.setXRange(-0.6, len(classes) - 0.4, padding=0)
        truth = f" · true class: {_name(names, comparison.label)}" if comparison.label is not None else ""
        if comparison.kl_teacher_student is None:
            self.kl_label.setText("KL(T‖S): needs a Teacher and a Student" + truth)
        else:
            self.kl_label.setText(f"KL(T‖S) = {comparison.kl_teacher_student:.4f} nats{truth}")
        rows = []
        for role, probs in probabilities.items():
            for rank, c in enumerate(np.argsort(-probs)[:TOP_K], start=1):
                rows.append([ROLE_TITLES[role], rank, _name(names, int(c)), float(probs[c])])
        self.table.set_rows(rows)
        self.map_table.set_rows(self._map_rows(comparison.map_metrics))

    @staticmethod
    def _map_rows(metrics: dict) -> list[list]:
        if not metrics:
            return [["(needs Teacher and Student maps)", None, ""]]
        rows = []
        for key, title in MAP_METRICS.items():
            if key in metrics:
                value = metrics[key]
                rows.append([title, float(value) if value is not None else math.nan, metrics.get(f"{key}_reason") or ""])
        return rows


def _name(names, index) -> str:
    return names[index] if index is not None and 0 <= index < len(names) else str(index)
