"""Dark knowledge over the dataset (or gallery): mean KL(T‖S) and KL(T‖B) against the temperature τ
(log axis) with 95% intervals of the mean, the "similar classes" table at the chosen τ (the classes
that carry the most softened Teacher mass besides the true class, and how much of it the Student and
the Base give them), and T–S / T–B top-1 and top-k agreement. The features job is shared with the
Embeddings tab; everything here is recomputed from its logits (numpy, milliseconds)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from kdx_engine.dark_knowledge import DEFAULT_TAU, MEAN_INTERVAL, PROPORTION_INTERVAL, dark_knowledge
from kdx_gui.docks.metrics.embedding_view import interval_text
from kdx_gui.docks.metrics.feature_outputs import FeatureOutputs, FeatureOutputsControls
from kdx_gui.docks.metrics.prediction_view import TemperatureSlider, preset_temperature
from kdx_gui.state.session import ROLE_COLOURS, ROLE_LETTERS, ROLE_TITLES, Session
from kdx_gui.widgets.layout import headers_over_views
from kdx_gui.widgets.plots import plain_axes
from kdx_gui.widgets.tables import CopyableTable


TAU_TICKS = (1, 2, 4, 8, 12, 20)


class DarkKnowledgeView(QWidget):
    def __init__(self, session: Session, outputs: FeatureOutputs, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.outputs = session, outputs
        self.controls = FeatureOutputsControls(outputs)
        self.temperature = TemperatureSlider(preset_temperature(session)[0])
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot_item: pg.PlotItem = self.plot.getPlotItem()
        self.plot_item.setLogMode(x=True, y=False)
        self.plot_item.setLabel("bottom", "temperature τ (log scale)")
        self.plot_item.setLabel("left", "mean KL(T‖M), nats")
        self.plot_item.setTitle("KL(T‖M) against τ, mean over the images (95% interval)", size="9pt")
        self.plot_item.showGrid(x=True, y=True, alpha=0.3)
        self.plot_item.setMouseEnabled(False, False)
        self.plot_item.hideButtons()
        plain_axes(self.plot_item)
        self.legend = self.plot_item.addLegend(offset=(-10, 10))
        self.plot.setMinimumHeight(170)
        self.similar_table = CopyableTable(["true class", "similar class", "Teacher mass", "Student mass", "Base mass"])
        self.agreement_table = CopyableTable(["models", "top-1 agreement", "top-k agreement", "KL at τ"])
        self.curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.result = None
        self._full = None  # (outputs, their DarkKnowledge at the curve temperatures)
        headers_over_views(self, [self.controls, self.temperature, self.summary],
                           [self.plot, self.similar_table, self.agreement_table], [220, 160, 90])
        self.temperature.temperatureChanged.connect(self.refresh)
        outputs.changed.connect(self.refresh)
        self.temperature.follow_student_preset(session)
        self.refresh()

    def set_temperature(self, tau: float) -> None:
        self.temperature.set_temperature(tau)


    def refresh(self, *_args) -> None:
        outputs = self.outputs.outputs
        self.plot_item.clear()
        self.legend.clear()
        self.curves = {}
        if outputs is None or "teacher" not in outputs.logits:
            self.result = None
            self.summary.setText("Dark knowledge: press Run to compute the models' outputs over the images.")
            self.similar_table.set_rows([])
            self.agreement_table.set_rows([])
            return
        tau = self.temperature.temperature()
        names = outputs.class_names or self.session.class_names()
        self.result = result = self._at_temperature(outputs, tau, names)
        self._draw_curves(result, tau)
        self._fill_tables(result, names)
        preset, origin = preset_temperature(self.session)
        kls = [f"KL(T‖{ROLE_LETTERS[r]}) = {interval_text(result.kl_at(r, tau))}" for r in result.curves]
        self.summary.setText(f"τ = {tau:.2f} (preset {preset:g} from {origin}) · n = {result.n} · "
                             + " · ".join(kls) + " · 95% intervals: normal (means), Wilson (agreement)")
        self.summary.setToolTip(f"KL and masses: {MEAN_INTERVAL}; agreement: {PROPORTION_INTERVAL}")

    def _at_temperature(self, outputs, tau: float, names):
        """The curves and agreement once per set of outputs (they do not depend on τ); KL at τ and the
        similar classes for each new τ, so the slider stays quick on large datasets."""
        if self._full is None or self._full[0] is not outputs:
            self._full = (outputs, dark_knowledge(outputs.logits, outputs.labels, DEFAULT_TAU, class_names=names))
        full = self._full[1]
        here = dark_knowledge(outputs.logits, outputs.labels, tau, temperatures=(), class_names=names, top_k=1)
        curves = {role: sorted([*(p for p in points if p.tau != tau), *here.curves[role]], key=lambda p: p.tau)
                  for role, points in full.curves.items()}
        return dataclasses.replace(full, tau=tau, curves=curves, similar=here.similar)

    def _draw_curves(self, result, tau: float) -> None:
        for role, points in result.curves.items():
            x = np.array([p.tau for p in points])
            y = np.array([p.kl.value for p in points])
            low = np.array([p.kl.low if math.isfinite(p.kl.low) else p.kl.value for p in points])
            high = np.array([p.kl.high if math.isfinite(p.kl.high) else p.kl.value for p in points])
            colour = ROLE_COLOURS[role]
            lower = self.plot_item.plot(x, low, pen=pg.mkPen(colour, width=0.5))
            upper = self.plot_item.plot(x, high, pen=pg.mkPen(colour, width=0.5))
            band = pg.FillBetweenItem(lower, upper, brush=pg.mkBrush(pg.mkColor(colour).lighter(170)))
            self.plot_item.addItem(band)
            self.plot_item.plot(x, y, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour,
                                symbolPen=colour, name=f"KL(T‖{ROLE_LETTERS[role]}), {ROLE_TITLES[role]}")
            self.curves[role] = (x, y, low, high)
        self.plot_item.addItem(pg.InfiniteLine(math.log10(tau), angle=90,
                                               pen=pg.mkPen("#555555", style=Qt.PenStyle.DashLine)))
        self.plot_item.getAxis("bottom").setTicks([[(math.log10(t), f"{t:g}") for t in TAU_TICKS]])

    def _fill_tables(self, result, names) -> None:
        def name(c):
            return names[c] if c < len(names) else str(c)

        rows = []
        for row in result.similar:
            rows.append([f"{name(row.true_class)} (n = {row.n})", name(row.other_class), interval_text(row.mass),
                         interval_text(row.model_mass.get("student")) if "student" in row.model_mass else "—",
                         interval_text(row.model_mass.get("base")) if "base" in row.model_mass else "—"])
        self.similar_table.set_rows(rows)
        agreement = []
        for role, values in result.agreement.items():
            agreement.append([f"Teacher–{ROLE_TITLES[role]}", interval_text(values["top1"]),
                              f"{interval_text(values['topk'])} (k = {result.top_k})",
                              interval_text(result.kl_at(role, result.tau))])
        self.agreement_table.set_rows(agreement)
