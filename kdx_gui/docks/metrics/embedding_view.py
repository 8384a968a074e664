"""Embeddings: the Teacher's, Student's (and Base's) penultimate features projected to 2-D side by side
(PCA always; t-SNE / UMAP when installed; each turned onto the Teacher's by Procrustes), coloured by
true class, prediction or T–S agreement, with linked selection: clicking a point makes its image the
current one (gallery and canvas follow), and the current image is ringed in every plot. Beside them,
per class: leave-one-out k-NN accuracy of each model's features and the T–S / T–B neighbourhood
overlap, with 95% intervals. Projections run as jobs (progress, Cancel): a cancelled job stops before the
next model's projection (one t-SNE or UMAP run cannot be interrupted) and its result is dropped."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from kdx_gui.docks.metrics.feature_outputs import FeatureOutputs, FeatureOutputsControls
from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ROLE_LETTERS, ROLE_TITLES, ROLES, Session
from kdx_gui.widgets.layout import headers_over_views
from kdx_gui.widgets.plots import plain_axes
from kdx_gui.widgets.tables import CopyableTable

PROJECTION_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
COLOUR_MODES = {"class": "true class", "prediction": "prediction", "agreement": "T–S agreement"}
AGREE, DISAGREE, UNKNOWN = "#2e7d32", "#c62828", "#9e9e9e"
POINT_SIZE = 8


def class_colours(count: int) -> list[str]:
    """One distinct colour per class."""
    return [pg.intColor(i, hues=max(count, 1), values=1, maxValue=220).name() for i in range(count)]


def interval_text(value) -> str:
    """``0.983 [0.945, 0.996]``, or n/a with the reason."""
    if value is None or not value.is_defined:
        return "n/a" + (f" ({value.reason})" if value is not None and value.reason else "")
    if value.has_interval:
        return f"{value.value:.3f} [{value.low:.3f}, {value.high:.3f}]"
    return f"{value.value:.3f}"


class EmbeddingView(QWidget):
    def __init__(self, session: Session, jobs: JobRunner, outputs: FeatureOutputs, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.jobs, self.outputs = session, jobs, outputs
        self.controls = FeatureOutputsControls(outputs)
        self.projection_box = QComboBox()
        self.colour_box = QComboBox()
        for key, title in COLOUR_MODES.items():
            self.colour_box.addItem(title, key)
        self.projection_box.currentIndexChanged.connect(self._projection_chosen)
        self.colour_box.currentIndexChanged.connect(self._redraw_points)
        options = QWidget()
        row = QHBoxLayout(options)
        row.setContentsMargins(0, 0, 0, 0)
        for label, box in (("Projection:", self.projection_box), ("Colour by:", self.colour_box)):
            row.addWidget(QLabel(label))
            row.addWidget(box)
        row.addStretch(1)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.plots_widget = QWidget()
        self.plots_layout = QHBoxLayout(self.plots_widget)
        self.plots_layout.setContentsMargins(0, 0, 0, 0)
        self.plots: dict[str, pg.PlotWidget] = {}
        self.scatters: dict[str, pg.ScatterPlotItem] = {}
        self.rings: dict[str, pg.ScatterPlotItem] = {}
        self.table = CopyableTable(["class", "n", "k-NN T", "k-NN S", "k-NN B", "overlap T–S", "overlap T–B"])
        self.projections: dict[str, np.ndarray] = {}
        self.projection_note = ""
        self.projection_job = None
        self.highlighted: int | None = None
        headers_over_views(self, [self.controls, options, self.note], [self.plots_widget, self.table], [300, 150])
        self.plots_widget.setMinimumHeight(200)
        outputs.changed.connect(self._outputs_changed)
        session.currentChanged.connect(self._current_changed)
        session.engineReady.connect(self._fill_projections)
        self._fill_projections()
        self._outputs_changed()

    # --- projections ------------------------------------------------------------------------------
    def _fill_projections(self, *_args) -> None:
        """PCA, and t-SNE / UMAP where the engine finds their packages."""
        methods = ["pca"]
        if self.session.engine_ready:
            from kdx_engine.embeddings import available_projections

            methods = list(available_projections())
        current = self.projection_box.currentData()
        self.projection_box.blockSignals(True)
        self.projection_box.clear()
        for method in methods:
            self.projection_box.addItem(PROJECTION_TITLES[method], method)
        self.projection_box.setCurrentIndex(max(self.projection_box.findData(current), 0))
        self.projection_box.blockSignals(False)

    def set_projection(self, method: str) -> None:
        index = self.projection_box.findData(method)
        if index < 0:
            raise ValueError(f"projection {method!r} is not available here")
        self.projection_box.setCurrentIndex(index)

    def _projection_chosen(self, _index: int) -> None:
        self.project()

    def project(self):
        """Submit the projection job for the current features and method; returns the Job."""
        outputs = self.outputs.outputs
        if outputs is None:
            return None
        method = self.projection_box.currentData() or "pca"
        features = {role: outputs.features[role] for role in ROLES if role in outputs.features}

        def work(progress):
            from kdx_engine.embeddings import aligned_to, project

            done, reference, result = 0, None, {}
            for role, values in features.items():
                progress.update(done / len(features), f"{PROJECTION_TITLES[method]} of the {ROLE_TITLES[role]}")
                projection = project(values, method)
                if reference is None:
                    reference = projection
                else:
                    projection = aligned_to(projection, reference)
                result[role] = projection
                done += 1
            progress.update(1.0, "done")
            return result

        self.note.setText(f"projecting ({PROJECTION_TITLES[method]})…")
        self.projection_job = self.jobs.submit(f"{PROJECTION_TITLES[method]} of the features", work,
                                               key="embedding-projection", on_success=self._projected,
                                               on_failure=self._projection_failed,
                                               on_cancel=lambda: self._projection_failed("cancelled"))
        return self.projection_job

    def _projected(self, projections) -> None:
        self.projection_job = None
        self.projections = {role: p.coordinates for role, p in projections.items()}
        first = next(iter(projections.values()))
        if first.method == "pca":
            share = ", ".join(f"{ROLE_LETTERS[r]} {sum(p.explained):.0%}" for r, p in projections.items())
            self.projection_note = f"PCA (exact); variance on the two axes: {share}; S and B turned onto T"
        else:
            self.projection_note = f"{PROJECTION_TITLES[first.method]} ({first.note})"
        self._draw_plots()

    def _projection_failed(self, message: str) -> None:
        self.projection_job = None
        self.note.setText(f"⚠ projection: {message}")

    # --- drawing ----------------------------------------------------------------------------------
    def _outputs_changed(self) -> None:
        self.projections = {}
        self._fill_table()
        if self.outputs.outputs is None:
            self._clear_plots()
            self.note.setText("Embeddings: press Run to compute the models' penultimate features.")
            return
        self.project()

    def _clear_plots(self) -> None:
        for plot in self.plots.values():
            self.plots_layout.removeWidget(plot)
            plot.deleteLater()
        self.plots, self.scatters, self.rings = {}, {}, {}

    def _draw_plots(self) -> None:
        self._clear_plots()
        outputs = self.outputs.outputs
        if outputs is None or not self.projections:
            return
        for role, coordinates in self.projections.items():
            plot = pg.PlotWidget()
            item = plot.getPlotItem()
            item.setTitle(f"{ROLE_TITLES[role]} ({outputs.features[role].shape[1]}-d)", size="9pt")
            item.hideButtons()
            plain_axes(item)
            scatter = pg.ScatterPlotItem(size=POINT_SIZE, pen=pg.mkPen("#ffffff", width=0.5), hoverable=True,
                                         tip=partial(self._tip, role))
            scatter.sigClicked.connect(self._points_clicked)
            ring = pg.ScatterPlotItem(size=POINT_SIZE + 10, pen=pg.mkPen("#000000", width=2.5), brush=None)
            item.addItem(scatter)
            item.addItem(ring)
            self.plots[role], self.scatters[role], self.rings[role] = plot, scatter, ring
            self.plots_layout.addWidget(plot, 1)
        for role, plot in self.plots.items():
            if role != "teacher" and "teacher" in self.plots:
                plot.getPlotItem().setXLink(self.plots["teacher"].getPlotItem())
                plot.getPlotItem().setYLink(self.plots["teacher"].getPlotItem())
        self._redraw_points()
        self._current_changed()

    def _redraw_points(self, *_args) -> None:
        outputs = self.outputs.outputs
        if outputs is None:
            return
        names = outputs.class_names or self.session.class_names()
        mode = self.colour_box.currentData()
        for role, scatter in self.scatters.items():
            coordinates = self.projections[role]
            brushes = [pg.mkBrush(c) for c in self.point_colours(role, mode)]
            scatter.setData(x=coordinates[:, 0], y=coordinates[:, 1], brush=brushes, data=list(range(outputs.n)))
        self.note.setText(self.projection_note + " · " + self._legend(mode, names) + " · click a point to open its image")

    def point_colours(self, role: str, mode: str) -> list[str]:
        """Each row's colour in ``role``'s plot: by true class, by that model's prediction, or by whether
        the Teacher and the Student (the Base in the Base's plot) agree on the top-1 class."""
        outputs = self.outputs.outputs
        classes = class_colours(next(iter(outputs.logits.values())).shape[1])
        if mode == "class":
            return [classes[label] if label is not None and label < len(classes) else UNKNOWN
                    for label in outputs.labels]
        if mode == "prediction":
            return [classes[int(c)] for c in outputs.logits[role].argmax(axis=1)]
        other = "base" if role == "base" else "student"
        same = outputs.logits["teacher"].argmax(axis=1) == outputs.logits[other].argmax(axis=1)
        return [AGREE if s else DISAGREE for s in same]

    @staticmethod
    def _legend(mode: str, names) -> str:
        if mode == "agreement":
            return f"<span style='color:{AGREE}'>●</span> T and S agree, <span style='color:{DISAGREE}'>●</span> differ"
        colours = class_colours(len(names))
        return " ".join(f"<span style='color:{c}'>●</span> {n}" for c, n in zip(colours, names))

    def _tip(self, role: str, x=None, y=None, data=None) -> str:
        """The hovered point's file, true class and this model's prediction."""
        outputs = self.outputs.outputs
        if outputs is None or data is None or not 0 <= int(data) < outputs.n:
            return ""
        row = int(data)
        names = outputs.class_names or self.session.class_names()

        def name(c):
            return names[c] if c is not None and c < len(names) else "unknown"

        predicted = int(np.argmax(outputs.logits[role][row]))
        return f"{Path(outputs.paths[row]).name}: true {name(outputs.labels[row])}, " \
               f"{ROLE_LETTERS[role]} predicts {name(predicted)}"

    def _points_clicked(self, _scatter, points, *_args) -> None:
        if len(points):
            self.select_row(int(points[0].data()))

    def select_row(self, row: int) -> None:
        """What a click on a point does: its image becomes the current one (gallery and canvas follow)."""
        self.outputs.select_row(row)

    def _current_changed(self, *_args) -> None:
        row = self.outputs.row_of_current()
        self.highlighted = row
        for role, ring in self.rings.items():
            if row is None:
                ring.setData([], [])
            else:
                coordinates = self.projections[role]
                ring.setData([coordinates[row, 0]], [coordinates[row, 1]])

    # --- per-class table ---------------------------------------------------------------------------
    def _fill_table(self) -> None:
        metrics = self.outputs.metrics
        if metrics is None:
            self.table.set_rows([])
            return
        names = metrics.class_names or self.session.class_names()
        knn = metrics.knn
        overlap = metrics.overlap

        def cell(record, c=None):
            if record is None:
                return "—"
            return interval_text(record.overall if c is None else record.per_class.get(c))

        rows = [["all classes", metrics.n_labelled, *(cell(knn.get(r)) for r in ROLES),
                 cell(overlap.get("teacher-student")), cell(overlap.get("teacher-base"))]]
        counts = next(iter(overlap.values())).counts if overlap else {}
        for c in sorted(counts):
            name = names[c] if c < len(names) else str(c)
            rows.append([name, counts[c], *(cell(knn.get(r), c) for r in ROLES),
                         cell(overlap.get("teacher-student"), c), cell(overlap.get("teacher-base"), c)])
        chance = next(iter(overlap.values())).chance if overlap else float("nan")
        rows.append([f"(chance overlap k/(n−1), k = {metrics.k})", metrics.n, "", "", "", f"{chance:.3f}", f"{chance:.3f}"])
        self.table.set_rows(rows)
