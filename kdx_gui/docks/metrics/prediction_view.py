"""Predictions for the current image: each model's top-k classes as bars softened by a temperature τ
(slider, 1–20 on a log scale, preset from the Student's sidecar or 4), KL(T‖S), KL(T‖B) and each
model's entropy at τ, and how alike the Teacher's and the Student's maps are; tables copy as TSV."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from kdx_engine.dark_knowledge import DEFAULT_TAU, TAU_MAX, TAU_MIN, soften_image

from kdx_gui.state.session import ROLE_COLOURS, ROLE_LETTERS, ROLE_TITLES, ROLES, Session
from kdx_gui.widgets.layout import headers_over_views
from kdx_gui.widgets.tables import CopyableTable

TOP_K = 5
MAP_METRICS = {"pearson": "Pearson r", "spearman": "Spearman ρ", "top_iou": "IoU of top 20%",
               "energy_a": "Teacher energy in mask", "energy_b": "Student energy in mask",
               "pointing_a": "Teacher pointing game", "pointing_b": "Student pointing game"}


SLIDER_STEPS = 1000


class TemperatureSlider(QWidget):
    """τ from 1 to 20 on a log scale, with its value beside it; ``temperatureChanged(τ)`` as it moves."""

    temperatureChanged = Signal(float)

    def __init__(self, tau: float = DEFAULT_TAU, parent: QWidget | None = None):
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setToolTip("Temperature τ of the softened outputs softmax(z/τ), log scale 1–20")
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(52)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("τ"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        self.slider.valueChanged.connect(self._moved)
        self.set_temperature(tau)

    @staticmethod
    def position_of(tau: float) -> int:
        tau = min(max(float(tau), TAU_MIN), TAU_MAX)
        return round(SLIDER_STEPS * math.log(tau / TAU_MIN) / math.log(TAU_MAX / TAU_MIN))

    @staticmethod
    def temperature_at(position: int) -> float:
        return TAU_MIN * (TAU_MAX / TAU_MIN) ** (position / SLIDER_STEPS)

    def temperature(self) -> float:
        return self._tau

    def set_temperature(self, tau: float) -> None:
        """Move the slider to τ (clamped to 1–20); the exact τ is kept, not the nearest step."""
        self._tau = min(max(float(tau), TAU_MIN), TAU_MAX)
        self.slider.blockSignals(True)
        self.slider.setValue(self.position_of(self._tau))
        self.slider.blockSignals(False)
        self.value_label.setText(f"{self._tau:.2f}")
        self.temperatureChanged.emit(self._tau)

    def follow_student_preset(self, session: Session) -> None:
        """Go back to the preset τ whenever another Student is loaded."""
        self._session = session
        session.modelChanged.connect(self._model_changed)

    def _model_changed(self, role: str) -> None:
        if role == "student":
            self.set_temperature(preset_temperature(self._session)[0])

    def _moved(self, position: int) -> None:
        self._tau = self.temperature_at(position)
        self.value_label.setText(f"{self._tau:.2f}")
        self.temperatureChanged.emit(self._tau)


def preset_temperature(session: Session) -> tuple[float, str]:
    """The Student's sidecar τ (the one it was distilled at) when it has one, else 4; and where it came from."""
    student = session.models.get("student")
    tau = getattr(student.info.preprocessing, "distillation_temperature", None) if student is not None else None
    return (float(tau), "the Student's sidecar") if tau else (DEFAULT_TAU, "the default")


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
        self.temperature = TemperatureSlider(preset_temperature(session)[0])
        self.temperature.temperatureChanged.connect(self.refresh)
        self.table = CopyableTable(["model", "rank", "class", "probability"])
        self.map_table = CopyableTable(["T–S map comparison", "value", "note"])
        headers_over_views(self, [self.temperature, self.kl_label], [self.plot, self.table, self.map_table], [220, 160, 120])
        self.bars: dict[str, pg.BarGraphItem] = {}
        session.comparisonChanged.connect(self.refresh)
        self.temperature.follow_student_preset(session)
        self.refresh()

    def set_temperature(self, tau: float) -> None:
        self.temperature.set_temperature(tau)


    def refresh(self, *_args) -> None:
        comparison = self.session.comparison
        self.plot_item.clear()
        self.legend.clear()
        self.bars = {}
        if comparison is None or not comparison.probabilities:
            self.kl_label.setText("No predictions yet: load a model and pick an image.")
            self.table.set_rows([])
            self.map_table.set_rows([])
            return
        tau = self.temperature.temperature()
        raw = {role: comparison.probabilities[role] for role in ROLES if role in comparison.probabilities}
        softened = soften_image(raw, tau)
        probabilities = softened.distributions
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
        self.plot_item.setLabel("left", f"probability at τ = {tau:.2f}")
        truth = f" · true class: {_name(names, comparison.label)}" if comparison.label is not None else ""
        self.kl_label.setText(self._summary(softened) + truth)
        rows = []
        for role, probs in probabilities.items():
            for rank, c in enumerate(np.argsort(-probs)[:TOP_K], start=1):
                rows.append([ROLE_TITLES[role], rank, _name(names, int(c)), float(probs[c])])
        self.table.set_rows(rows)
        self.map_table.set_rows(self._map_rows(comparison.map_metrics))

    @staticmethod
    def _summary(softened) -> str:
        """KL(T‖S) and KL(T‖B) at τ, then each model's entropy, in nats."""
        tau = f"τ = {softened.tau:.2f}"
        if softened.kl_teacher_student is None:
            parts = [f"KL(T‖S): needs a Teacher and a Student ({tau})"]
        else:
            parts = [f"KL(T‖S) = {softened.kl_teacher_student:.4f} nats at {tau}"]
        if softened.kl_teacher_base is not None:
            parts.append(f"KL(T‖B) = {softened.kl_teacher_base:.4f}")
        entropies = ", ".join(f"{ROLE_LETTERS[role]} {value:.3f}" for role, value in softened.entropies.items())
        return " · ".join(parts + [f"entropy {entropies} nats"])

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
