"""VAM attention (METHODS §7): per-layer G_out×G_in attention heatmaps of one model, and the
normalised row entropy over depth with every VAM model overlaid."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from kdx_gui.docks.metrics.matrix_grid import AttentionTab, MatrixGrid, reasons
from kdx_gui.state.session import AttentionRecord, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.plots import plain_axes
from kdx_gui.widgets.tables import CopyableTable

SERIES_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


class VamView(AttentionTab):
    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(session, settings, parent)
        self.entropy_plot = pg.PlotWidget()
        item = self.entropy_plot.getPlotItem()
        item.setTitle("row entropy over depth (1 = uniform)", size="9pt")
        item.setLabel("left", "H(A row) / log G_in")
        item.setLabel("bottom", "VAM layer (by depth)")
        item.setYRange(0, 1.05, padding=0)
        item.showGrid(y=True, alpha=0.3)
        item.setMouseEnabled(False, False)
        item.hideButtons()
        plain_axes(item)
        self.legend = item.addLegend(offset=(-10, -10))
        self.entropy_plot.setMinimumHeight(170)
        self.grid = MatrixGrid(columns=4, write_values=False, bar_label="attention weight A (0…1)")
        self.table = CopyableTable(["model", "layer", "groups (out×in)", "mean row entropy"])
        self.lay_out([self.entropy_plot, self.grid.wrapped(), self.table], [220, 420, 120])

    def vam_records(self) -> dict[str, AttentionRecord]:
        return {name: r for name, r in self.session.attention.items() if r.vam_layers}

    def refresh(self, *_args) -> None:
        records = self.vam_records()
        self.picker.set_names(list(records))
        item = self.entropy_plot.getPlotItem()
        item.clear()
        self.legend.clear()
        if self.session.engine_ready and not self.session.engine.has("vam"):
            self.message.setText(self.session.engine.why_missing("vam"))
        elif not records:
            others = reasons(self.session.attention, "vam_reason")
            self.message.setText("No model with VAM parameters. Load a VAM student in a slot or use Add "
                                 "checkpoint…" + (f" ({others})" if others else ""))
        else:
            self.message.setText(f"{len(records)} VAM model(s). Heatmaps: attention A = softmax(θ/τ), rows = "
                                 "output groups, columns = input groups; H̄ = mean normalised row entropy.")
        rows = []
        for index, (name, record) in enumerate(records.items()):
            entropy = [layer.mean_row_entropy for layer in record.vam_layers]
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            item.plot(list(range(1, len(entropy) + 1)), entropy, pen=pg.mkPen(colour, width=2), symbol="o",
                      symbolSize=6, symbolBrush=colour, symbolPen=colour, name=name)
            rows += [[name, layer.layer, "×".join(map(str, layer.attention.shape)), layer.mean_row_entropy]
                     for layer in record.vam_layers]
        self.table.set_rows(rows)
        self.draw_picked()

    def draw_picked(self, *_args) -> None:
        record = self.vam_records().get(self.picker.combo.currentText())
        if record is None:
            self.grid.set_matrices([])
            return
        self.grid.set_matrices([(layer.layer, layer.attention, f"H̄ = {layer.mean_row_entropy:.2f}")
                                for layer in record.vam_layers])
