"""Dataset metrics: run the engine's ``dataset_metrics`` on a folder, then show FSS per stage with
intervals, the stage×stage FSS and CKA heatmaps (Layers tab) and RS per stage with partial RS
(Relevance tab). Results live in ``session.dataset_metrics``; both tabs redraw from it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ROLE_COLOURS, ROLE_LETTERS, ROLE_TITLES, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.plots import Heatmap, IntervalPlot
from kdx_gui.widgets.layout import headers_over_views
from kdx_gui.widgets.tables import CopyableTable

PAIR_COLOURS = {("teacher", "student"): "#6a1b9a", ("student", "base"): "#ef6c00", ("teacher", "base"): "#00838f"}


def pair_name(a: str, b: str) -> str:
    return f"{ROLE_LETTERS.get(a, a)}–{ROLE_LETTERS.get(b, b)}"


class DatasetMetricsRunner(QWidget):
    """Folder, Run: shows and sets ``session.dataset_folder``, submits the dataset-metrics job and stores
    its result in the session."""

    def __init__(self, session: Session, jobs: JobRunner, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.jobs, self.settings = session, jobs, settings
        self.folder_label = QLabel()
        self.choose_button = QPushButton("Dataset folder…")
        self.choose_button.clicked.connect(self.choose_folder)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self._run_clicked)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.job = None
        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.folder_label, 1)
        row.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        session.engineReady.connect(self.refresh)
        session.modelChanged.connect(self.refresh)
        session.datasetMetricsChanged.connect(self.refresh)
        session.datasetFolderChanged.connect(self._folder_changed)
        self._folder_changed()

    def _run_clicked(self) -> None:
        self.run()

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder (class_name/image)",
                                                  self.settings.last_folder("datasets"))
        if folder:
            self.settings.remember_folder("datasets", folder)
            self.session.set_dataset_folder(folder)

    def _folder_changed(self) -> None:
        folder = self.session.dataset_folder
        self.folder_label.setText(Path(folder).name if folder else "no dataset folder")
        self.folder_label.setToolTip(folder or "A folder laid out as class_name/image.ext")
        self.refresh()

    def blocker(self) -> str | None:
        """Why the metrics cannot run now, or None."""
        if not self.session.engine_ready:
            return "loading engine…"
        if not self.session.engine.has("metrics"):
            return self.session.engine.why_missing("metrics")
        missing = [ROLE_TITLES[r] for r in ("teacher", "student") if self.session.models[r] is None]
        if missing:
            return f"needs a {' and a '.join(missing)} model"
        if not self.session.dataset_folder:
            return "choose a dataset folder (class_name/image, n ≥ 32 images)"
        return None

    def refresh(self, *_args) -> None:
        reason = self.blocker()
        self.run_button.setEnabled(reason is None)
        self.run_button.setToolTip(reason or "Compute FSS, CKA, RS and partial RS over the folder")
        metrics = self.session.dataset_metrics
        if self.job is not None:
            return
        if metrics is not None:
            notes = list(metrics.notes) + ([f"{len(metrics.skipped)} unreadable file(s) skipped"] if metrics.skipped else [])
            self.status.setText(f"n = {metrics.n} images ({metrics.n_labelled} labelled) from "
                                f"{Path(self.session.dataset_metrics_folder or '').name}, 95% intervals: "
                                f"{metrics.interval['method']}" + ("; " + "; ".join(notes) if notes else ""))
            self.status.setStyleSheet("")
        else:
            self.status.setText(reason or "ready: press Run")
            self.status.setStyleSheet("")

    def run(self, folder: str | None = None):
        """Submit the job (``folder`` overrides the chosen one); returns the Job."""
        if folder is not None:
            self.session.set_dataset_folder(folder)
        models = self.session.loaded_models()
        folder = self.session.dataset_folder

        def work(progress):
            from kdx_gui.state import analysis

            return analysis.run_dataset_metrics(models, folder, progress)

        self.status.setText("computing…")
        self.job = self.jobs.submit(f"dataset metrics on {Path(folder).name}", work, key="dataset-metrics",
                                    on_success=lambda metrics: self._done(metrics, folder), on_failure=self._failed,
                                    on_cancel=self._cancelled)
        return self.job

    def _done(self, metrics, folder: str) -> None:
        self.job = None
        self.session.set_dataset_metrics(metrics, folder)

    def _cancelled(self) -> None:
        self._failed("cancelled")

    def _failed(self, message: str) -> None:
        self.job = None
        self.refresh()
        self.status.setText(f"⚠ dataset metrics: {message}")
        self.status.setStyleSheet("color: #b00020;")


class LayerMetricsView(QWidget):
    """FSS per matched stage pair with intervals; stage×stage FSS and CKA heatmaps; the full table."""

    def __init__(self, session: Session, runner: DatasetMetricsRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.fss_plot = IntervalPlot("FSS by matched stage (95% interval)", "FSS (R²*)", bounds=(0.0, 1.0))
        self.pair_box = QComboBox()
        self.pair_box.currentIndexChanged.connect(self._draw_heatmaps)
        self.fss_heatmap = Heatmap("FSS", "viridis", (0.0, 1.0), show_bar=False)
        self.cka_heatmap = Heatmap("debiased linear CKA", "viridis", (0.0, 1.0), show_bar=False)
        self.table = CopyableTable(["pair", "stage a", "stage b", "FSS", "FSS low", "FSS high", "CKA", "CKA low",
                                    "CKA high"])
        heatmaps = QSplitter(Qt.Orientation.Horizontal)
        heatmaps.addWidget(self.fss_heatmap)
        heatmaps.addWidget(self.cka_heatmap)
        pair_row = QHBoxLayout()
        pair_row.addWidget(QLabel("Models"))
        pair_row.addWidget(self.pair_box)
        pair_row.addWidget(QLabel("stage × stage; colour 0 (dark) → 1 (yellow)"))
        pair_row.addStretch(1)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addLayout(pair_row)
        lower_layout.addWidget(heatmaps, 1)
        headers_over_views(self, [runner], [self.fss_plot, lower, self.table])
        session.datasetMetricsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        metrics = self.session.dataset_metrics
        self.fss_plot.clear_series()
        self.pair_box.blockSignals(True)
        self.pair_box.clear()
        if metrics is None:
            self.pair_box.blockSignals(False)
            self.table.set_rows([])
            self.fss_heatmap.set_matrix(np.zeros((0, 0)), [], [])
            self.cka_heatmap.set_matrix(np.zeros((0, 0)), [], [])
            return
        pairs: dict[tuple[str, str], list] = {}
        for pair in metrics.fss:
            pairs.setdefault((pair.a, pair.b), []).append(pair)
        for (a, b), items in pairs.items():
            self.fss_plot.add_series(pair_name(a, b), list(range(1, len(items) + 1)),
                                     [p.result.value for p in items], [p.result.low for p in items],
                                     [p.result.high for p in items], PAIR_COLOURS.get((a, b), "#444444"))
        self.fss_plot.plot_item.setLabel("bottom", "matched stage pair, by depth (stages in the table)")
        for matrix in metrics.fss_matrix:
            self.pair_box.addItem(pair_name(matrix.a, matrix.b), (matrix.a, matrix.b))
        self.pair_box.blockSignals(False)
        self._draw_heatmaps()
        rows = []
        for fss, cka in zip(metrics.fss_matrix, metrics.cka_matrix):
            for i, row_name in enumerate(fss.rows):
                for j, column_name in enumerate(fss.columns):
                    f, c = fss.values[i][j], cka.values[i][j]
                    rows.append([pair_name(fss.a, fss.b), row_name, column_name, f.value, f.low, f.high,
                                 c.value, c.low, c.high])
        self.table.set_rows(rows)

    def _draw_heatmaps(self, *_args) -> None:
        metrics = self.session.dataset_metrics
        key = self.pair_box.currentData()
        if metrics is None or key is None:
            return
        for heatmap, matrices, label in ((self.fss_heatmap, metrics.fss_matrix, "FSS"),
                                         (self.cka_heatmap, metrics.cka_matrix, "CKA")):
            matrix = next(m for m in matrices if (m.a, m.b) == key)
            values = np.array([[v.value for v in row] for row in matrix.values], dtype=float)
            texts = [[f"{v.value:.2f}" if np.isfinite(v.value) else "—" for v in row] for row in matrix.values]
            row_title = f"{ROLE_TITLES[matrix.a]} stage" if heatmap is self.fss_heatmap else ""
            heatmap.set_matrix(values, matrix.rows, matrix.columns, row_title, f"{ROLE_TITLES[matrix.b]} stage",
                               texts)


class RelevanceView(QWidget):
    """RS per stage for each model with intervals, and partial RS (semi-partial and true partial)."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.rs_plot = IntervalPlot("RS by stage (95% interval)", "RS (R²* with labels)", bounds=(0.0, 1.0))
        self.partial_plot = IntervalPlot("partial RS, semi-partial form", "sR²*", bounds=(0.0, 1.0))
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.rs_table = CopyableTable(["model", "stage", "RS", "low", "high", "note"])
        self.partial_table = CopyableTable(["model", "stage", "removed", "removed stage", "form", "value", "low",
                                            "high"])
        headers_over_views(self, [self.notes], [self.rs_plot, self.partial_plot, self.rs_table, self.partial_table])
        session.datasetMetricsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        metrics = self.session.dataset_metrics
        self.rs_plot.clear_series()
        self.partial_plot.clear_series()
        if metrics is None:
            self.notes.setText("Run dataset metrics (Layers tab) to see RS.")
            self.rs_table.set_rows([])
            self.partial_table.set_rows([])
            return
        self.notes.setText(f"n = {metrics.n_labelled} labelled images, label embedding {metrics.label_embedding}"
                           + ("; " + "; ".join(metrics.notes) if metrics.notes else "")
                           + ". RS(S|B) > RS(B|S): what the Student learned beyond the Base is more task-relevant.")
        by_model: dict[str, list] = {}
        for item in metrics.rs:
            by_model.setdefault(item.model, []).append(item)
        for role, items in by_model.items():
            self.rs_plot.add_series(ROLE_TITLES.get(role, role), list(range(1, len(items) + 1)),
                                    [i.result.value for i in items], [i.result.low for i in items],
                                    [i.result.high for i in items], ROLE_COLOURS.get(role, "#444444"))
        self.rs_plot.plot_item.setLabel("bottom", "stage (by depth)")
        groups: dict[tuple[str, str], list] = {}
        for item in metrics.partial_rs:
            if item.form == "semi-partial":
                groups.setdefault((item.model, item.removed), []).append(item)
        for (model, removed), items in groups.items():
            name = f"RS({ROLE_LETTERS.get(model, model)}|{ROLE_LETTERS.get(removed, removed)})"
            self.partial_plot.add_series(name, list(range(1, len(items) + 1)), [i.result.value for i in items],
                                         [i.result.low for i in items], [i.result.high for i in items],
                                         ROLE_COLOURS.get(model, "#444444"))
        self.partial_plot.plot_item.setLabel("bottom", "matched stage pair (by depth)")
        self.rs_table.set_rows([[ROLE_TITLES.get(i.model, i.model), i.layer, i.result.value, i.result.low,
                                 i.result.high, i.result.reason or ""] for i in metrics.rs])
        self.partial_table.set_rows([[ROLE_TITLES.get(i.model, i.model), i.layer,
                                      ROLE_TITLES.get(i.removed, i.removed), i.removed_layer, i.form, i.result.value,
                                      i.result.low, i.result.high] for i in metrics.partial_rs])
