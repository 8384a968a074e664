"""Visual concepts of KD (Cheng et al., METHODS §6) in the window: a background job (progress, Cancel)
computing each loaded model's entropy maps over the gallery images (and, with a checkpoint folder,
over the checkpoints of the Student's and the Base's runs); per model, the entropy map over the chosen
image with its concept cells (foreground and background in two colours); the dataset table (N_fg,
N_bg, λ_ratio or, without masks, only N) and the trajectory table (D_mean, D_var, ρ), Student − Base
beside them. The approximation is a separate, labelled choice, never shown as the published method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox,
    QVBoxLayout, QWidget,
)

from kdx_engine.figures.colormaps import apply_colormap
from kdx_gui.docks.metrics.embedding_view import interval_text
from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ROLE_TITLES, Session
from kdx_gui.widgets.tables import CopyableTable

FOREGROUND_COLOUR = np.array([255, 140, 0])   # concept cells inside the object mask
BACKGROUND_COLOUR = np.array([0, 200, 255])   # concept cells outside it
TINT = 0.6
LEGEND = ("brightness: low entropy (the layer keeps that cell's information) · "
          "<span style='color:#ff8c00'>■</span> concept on the object · "
          "<span style='color:#00c8ff'>■</span> concept in the background")
STAT_TITLES = {"N": "N (all concepts)", "N_fg": "N_fg (on the object)", "N_bg": "N_bg (background)",
               "lambda_ratio": "λ_ratio = N_fg/(N_fg+N_bg)"}
ROLES = ("student", "base", "teacher")
# The published settings (METHODS §6; EntropySettings' defaults, checked by the tests): the engine, and
# torch with it, is imported only when a job runs, so the window module stays free of torch.
PUBLISHED_STEPS, PUBLISHED_DRAWS, PUBLISHED_GRID = 80, 96, 16


def concept_picture(rgb: np.ndarray, entropy: np.ndarray, concepts: np.ndarray, foreground: np.ndarray | None,
                    levels: tuple[float, float]) -> np.ndarray:
    """The image (S×S×3) under its entropy map (low entropy = bright), concept cells tinted: orange on the
    object, blue in the background (all orange without a mask)."""
    size = rgb.shape[0]
    grid = entropy.shape[0]
    cells = np.minimum((np.arange(size) * grid) // size, grid - 1)
    low, high = levels
    unit = np.clip((high - entropy) / (high - low or 1.0), 0, 1)[cells][:, cells]
    picture = 0.45 * rgb.astype(float) + 0.55 * apply_colormap(unit, "inferno").astype(float)
    picked = concepts[cells][:, cells]
    on_object = foreground[cells][:, cells] if foreground is not None else np.ones_like(picked)
    for mask, colour in ((picked & on_object, FOREGROUND_COLOUR), (picked & ~on_object, BACKGROUND_COLOUR)):
        picture[mask] = (1 - TINT) * picture[mask] + TINT * colour
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


class ConceptsView(QWidget):
    """The Concepts tab (see the module docstring)."""

    def __init__(self, session: Session, jobs: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.jobs = session, jobs
        self.job = None
        self.result = None
        self._preprocessing: dict = {}
        self.steps = self._spin(1, 10000, PUBLISHED_STEPS, "SGD steps on σ (published: 80)")
        self.draws = self._spin(1, 4096, PUBLISHED_DRAWS, "noise draws per step, batched (published: 96)")
        self.grid = self._spin(1, 64, PUBLISHED_GRID, "G: σ on a G×G grid (published: 16)")
        self.approximate = QCheckBox("approximate (one backward pass; not the published method)")
        self.checkpoints = QLineEdit()
        self.checkpoints.setPlaceholderText("checkpoint folder with student/ and base/ (optional: trajectory)")
        browse = QPushButton("…")
        browse.setToolTip("Choose the folder of checkpoints")
        browse.clicked.connect(self._browse)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.image_box = QComboBox()
        self.image_box.currentIndexChanged.connect(self._draw_maps)
        self.pictures = pg.GraphicsLayoutWidget()
        self.pictures.setMinimumHeight(200)
        self.picture_items: dict[str, pg.ImageItem] = {}
        self.dataset_table = CopyableTable(["statistic", "Student", "Base", "Student − Base", "Teacher"])
        self.trajectory_table = CopyableTable(["metric", "Student", "Base", "Student − Base"])

        settings_row = QHBoxLayout()
        for label, widget in (("steps", self.steps), ("draws", self.draws), ("grid", self.grid)):
            settings_row.addWidget(QLabel(label))
            settings_row.addWidget(widget)
        settings_row.addWidget(self.approximate)
        settings_row.addStretch(1)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self.checkpoints, 1)
        checkpoint_row.addWidget(browse)
        run_row = QHBoxLayout()
        for widget in (self.run_button, self.cancel_button, self.progress):
            run_row.addWidget(widget)
        image_row = QHBoxLayout()
        image_row.addWidget(QLabel("image"))
        image_row.addWidget(self.image_box, 1)
        layout = QVBoxLayout(self)
        for row in (settings_row, checkpoint_row, run_row):
            layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addLayout(image_row)
        layout.addWidget(self.pictures, 3)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        layout.addWidget(legend)
        layout.addWidget(QLabel("Dataset (95% delete-one jackknife intervals over the images)"))
        layout.addWidget(self.dataset_table, 1)
        layout.addWidget(QLabel("Trajectory over the checkpoints"))
        layout.addWidget(self.trajectory_table, 1)
        session.imagesChanged.connect(self.refresh)
        session.modelChanged.connect(self.refresh)
        self.refresh()

    @staticmethod
    def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(low, high)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of checkpoints (student/, base/)")
        if folder:
            self.checkpoints.setText(folder)

    def blocker(self) -> str | None:
        """Why Run is off, or None."""
        if not self.session.loaded_models().get("student"):
            return "load a Student (and a Base) first"
        if len(self.session.images) < 2:
            return "add at least 2 images to the gallery (masks as name.mask.png give N_fg and N_bg)"
        return None

    def refresh(self, *_args) -> None:
        reason = self.blocker()
        running = self.job is not None
        self.run_button.setEnabled(reason is None and not running)
        self.cancel_button.setEnabled(running)
        if not running and self.result is None:
            self.status.setText(reason or "ready: press Run (published settings take minutes per image and model)")

    def settings(self):
        """The engine's ConceptSettings from the controls."""
        from kdx_engine.concepts.analysis import ConceptSettings
        from kdx_engine.concepts.approximate import ApproximateSettings
        from kdx_engine.concepts.entropy_map import EntropySettings

        grid = self.grid.value()
        if self.approximate.isChecked():
            return ConceptSettings(EntropySettings(grid=grid), ApproximateSettings(grid=grid))
        return ConceptSettings(EntropySettings(grid=grid, steps=self.steps.value(), draws=self.draws.value()))

    def _specs(self) -> list:
        from kdx_engine.concepts.analysis import ModelSpec
        from kdx_engine.concepts.trajectory import checkpoint_series
        from kdx_engine.models import default_target_layer, probe_layers

        folder = self.checkpoints.text().strip()
        specs = []
        for role, model in self.session.loaded_models().items():
            if role not in ROLES:
                continue
            layer = model.target_layer or default_target_layer(list(model.layers) or probe_layers(model.backend))
            series = ()
            if folder and role in ("student", "base") and (Path(folder) / role).is_dir():
                series = tuple(checkpoint_series(Path(folder) / role))
            specs.append(ModelSpec(role, model.backend, layer, series))
        return specs

    def run(self):
        """Submit the job over the gallery's images; returns the Job (None when blocked)."""
        if self.blocker() is not None:
            return None
        try:
            specs = self._specs()
        except ValueError as exc:
            self._failed(str(exc))
            return None
        images = [item.image for item in self.session.images]
        settings = self.settings()
        self._preprocessing = {spec.role: spec.backend.info.preprocessing for spec in specs}

        def work(progress):
            from kdx_engine.concepts.analysis import analyse_concepts

            return analyse_concepts(specs, images, settings, progress)

        self.result = None
        self.progress.setValue(0)
        self.status.setText("computing entropy maps…")
        self.status.setStyleSheet("")
        self.job = self.jobs.submit(f"visual concepts of {len(images)} image(s)", work, key="concepts",
                                    on_success=self._done, on_failure=self._failed, on_cancel=self._cancelled)
        self.job.progressed.connect(self._progressed)
        self.refresh()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _progressed(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        self.status.setText(f"computing: {message}")

    def _done(self, result) -> None:
        from kdx_engine.concepts.entropy_map import EntropySettings

        self.job = None
        self.result = result
        self.progress.setValue(1000)
        method = "approximate (one backward pass, not the published method)" \
            if result.settings.method == "approximate" else "sampled, published settings" \
            if result.settings.sampled == EntropySettings(grid=result.settings.sampled.grid) else "sampled"
        notes = "; ".join(result.notes)
        self.status.setText(f"n = {result.n} images · {method} · b = {result.settings.concept_threshold:g}"
                            + (f" · {notes}" if notes else ""))
        self.image_box.blockSignals(True)
        self.image_box.clear()
        self.image_box.addItems([image.path.name for image in result.images])
        self.image_box.blockSignals(False)
        self._fill_tables()
        self._draw_maps()
        self.refresh()

    def _cancelled(self) -> None:
        self._failed("cancelled; nothing was kept")

    def _failed(self, message: str) -> None:
        self.job = None
        self.refresh()
        self.status.setText(f"⚠ visual concepts: {message}")
        self.status.setStyleSheet("color: #b00020;")

    def _fill_tables(self) -> None:
        from kdx_engine.concepts.concept_counts import statistic_names

        result = self.result
        rows = []
        for name in statistic_names(result.has_masks):
            cells = [STAT_TITLES[name]]
            for role in ("student", "base"):
                model = result.models.get(role)
                cells.append(interval_text(model.statistics[name]) if model else "—")
            cells.append(interval_text(result.differences[name]) if name in result.differences else "—")
            teacher = result.models.get("teacher")
            cells.append(interval_text(teacher.statistics[name]) if teacher else "—")
            rows.append(cells)
        self.dataset_table.set_rows(rows)
        trajectory = []
        if result.trajectories:
            for name, title in (("D_mean", "D_mean"), ("D_var", "D_var"), ("rho", "ρ")):
                cells = [title]
                for role in ("student", "base"):
                    run = result.trajectories.get(role)
                    cells.append(interval_text(run.result.metrics[name]) if run else "—")
                diff = result.trajectory_differences.get(name)
                cells.append(interval_text(diff) if diff is not None else "—")
                trajectory.append(cells)
        self.trajectory_table.set_rows(trajectory)

    def _draw_maps(self, *_args) -> None:
        from kdx_engine.data.images import display_image

        self.pictures.clear()
        self.picture_items = {}
        result = self.result
        index = self.image_box.currentIndex()
        if result is None or index < 0:
            return
        everything = np.concatenate([m.entropies[index].ravel() for m in result.models.values()])
        levels = (float(everything.min()), float(everything.max()))
        for column, (role, model) in enumerate(result.models.items()):
            rgb = display_image(result.images[index], self._preprocessing[role])
            fg = result.foreground.get(role)
            picture = concept_picture(rgb, model.entropies[index], model.counts.concepts[index],
                                      fg[index] if fg is not None else None, levels)
            counts = model.counts
            title = f"{ROLE_TITLES.get(role, role)}: N = {int(counts.n[index])}"
            if counts.n_fg is not None:
                title += f" (fg {int(counts.n_fg[index])}, bg {int(counts.n_bg[index])})"
            view = self.pictures.addViewBox(row=0, col=column, lockAspect=True, enableMouse=False, invertY=True)
            item = pg.ImageItem(np.transpose(picture, (1, 0, 2)))
            view.addItem(item)
            self.pictures.addLabel(title, row=1, col=column, size="8pt")
            self.picture_items[role] = item
