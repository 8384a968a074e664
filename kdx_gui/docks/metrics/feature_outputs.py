"""The loaded models' penultimate features and logits over the dataset folder or the gallery, computed
in one job and shared by the Embeddings and Dark knowledge tabs (each shows a ``FeatureOutputsControls``
row: source, Run, status). Results are dropped as soon as the models or the source change."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ROLE_TITLES, Session

SOURCES = {"dataset": "Dataset folder", "gallery": "Gallery"}
NEIGHBOURS = 10


class FeatureOutputs(QObject):
    """Owner of the latest features/logits (the engine's ModelOutputs) and embedding metrics.

    ``rows_ids`` holds, for the gallery source, the gallery image id of each row (None for a folder,
    whose rows are matched to gallery images by file path)."""

    changed = Signal()
    statusChanged = Signal()

    def __init__(self, session: Session, jobs: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.jobs = session, jobs
        self.source = "dataset"
        self.outputs = None
        self.metrics = None
        self.row_ids: list[int] | None = None
        self.source_name = ""
        self.job = None
        self.status = ""
        self.backends: dict = {}  # the models the outputs came from
        session.modelChanged.connect(self._models_changed)
        session.engineReady.connect(self._status_changed)
        session.imagesChanged.connect(self._gallery_changed)
        session.datasetFolderChanged.connect(self._dataset_changed)

    def _models_changed(self, *_args) -> None:
        """Another model (not another CAM target layer: features are the penultimate layer's) drops them."""
        current = {role: m.backend for role, m in self.session.loaded_models().items()}
        if self.job is not None or self.outputs is not None and current != self.backends:
            self.clear()
        else:
            self.statusChanged.emit()

    def _status_changed(self, *_args) -> None:
        self.statusChanged.emit()

    def set_source(self, source: str) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        if source != self.source:
            self.source = source
            self.clear()

    def _gallery_changed(self) -> None:
        self._source_changed("gallery")

    def _dataset_changed(self) -> None:
        self._source_changed("dataset")

    def _source_changed(self, source: str) -> None:
        if self.source == source and self.outputs is not None:
            self.clear()
        else:
            self.statusChanged.emit()

    def clear(self, *_args) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self.outputs, self.metrics, self.row_ids, self.status = None, None, None, ""
        self.changed.emit()
        self.statusChanged.emit()

    def blocker(self) -> str | None:
        """Why the features cannot be computed now, or None."""
        if not self.session.engine_ready:
            return "loading engine…"
        missing = [ROLE_TITLES[r] for r in ("teacher", "student") if self.session.models[r] is None]
        if missing:
            return f"needs a {' and a '.join(missing)} model"
        if self.source == "dataset" and not self.session.dataset_folder:
            return "choose a dataset folder (Layers tab) or use the gallery"
        if self.source == "gallery" and len(self.session.images) < NEIGHBOURS + 2:
            return f"the gallery needs at least {NEIGHBOURS + 2} images (or use a dataset folder)"
        return None

    def run(self):
        """Submit the features job for the current source; returns the Job (None when blocked)."""
        reason = self.blocker()
        if reason is not None:
            self.status = reason
            self.statusChanged.emit()
            return None
        models = {role: m.backend for role, m in self.session.loaded_models().items()}
        class_names = self.session.class_names()
        if self.source == "dataset":
            folder = self.session.dataset_folder
            items, labels, name = None, None, Path(folder).name
        else:
            folder, items = None, list(self.session.images)
            labels, name = [self.session.label_of(item) for item in items], "the gallery"

        def work(progress):
            from kdx_engine.data import ImageFolderDataset
            from kdx_engine.embeddings import dataset_outputs, embedding_metrics, image_outputs

            if folder is not None:
                outputs = dataset_outputs(models, ImageFolderDataset(folder, class_names=class_names),
                                          progress=progress)
            else:
                outputs = image_outputs(models, [item.image for item in items], labels, progress=progress,
                                        class_names=class_names)
            return outputs, embedding_metrics(outputs, k=min(NEIGHBOURS, max(outputs.n - 1, 1)))

        ids = [item.id for item in items] if items is not None else None
        self.backends = dict(models)
        self.status = f"computing features of {name}…"
        self.statusChanged.emit()
        self.job = self.jobs.submit(f"features of {name}", work, key="feature-outputs",
                                    on_success=lambda result: self._done(result, ids, name),
                                    on_failure=self._failed, on_cancel=lambda: self._failed("cancelled"))
        return self.job

    def _done(self, result, ids, name: str) -> None:
        self.job = None
        self.outputs, self.metrics = result
        self.row_ids, self.source_name = ids, name
        skipped = f"; {len(self.outputs.skipped)} unreadable file(s) skipped" if self.outputs.skipped else ""
        notes = "".join(f"; {note}" for note in self.metrics.notes)
        self.status = (f"n = {self.outputs.n} images of {name} ({self.metrics.n_labelled} labelled), "
                       f"penultimate features, k = {self.metrics.k} neighbours{skipped}{notes}")
        self.changed.emit()
        self.statusChanged.emit()

    def _failed(self, message: str) -> None:
        self.job = None
        self.status = f"⚠ features: {message}"
        self.statusChanged.emit()

    def row_of_current(self) -> int | None:
        """The row of the session's current image, or None when it is not among the rows."""
        item = self.session.current_image
        if item is None or self.outputs is None:
            return None
        if self.row_ids is not None:
            return self.row_ids.index(item.id) if item.id in self.row_ids else None
        path = _resolved(getattr(item.image, "path", None))
        rows = {_resolved(p): i for i, p in enumerate(self.outputs.paths)}
        return rows.get(path)

    def gallery_index_of_row(self, row: int) -> int | None:
        """The gallery index of the image in ``row``, or None when it is not in the gallery."""
        if self.row_ids is not None:
            ids = [item.id for item in self.session.images]
            return ids.index(self.row_ids[row]) if self.row_ids[row] in ids else None
        target = _resolved(self.outputs.paths[row])
        for index, item in enumerate(self.session.images):
            if _resolved(getattr(item.image, "path", None)) == target:
                return index
        return None

    def select_row(self, row: int) -> None:
        """Make the image of ``row`` the current image: the gallery and the canvas follow. An image of a
        dataset folder that is not in the gallery yet is added to it first (in a job)."""
        index = self.gallery_index_of_row(row)
        if index is not None:
            self.session.set_current(index)
            return
        path = self.outputs.paths[row]

        def work(progress):
            from kdx_gui.state import analysis

            return analysis.load_gallery_images([path], progress)

        self.jobs.submit(f"adding {Path(path).name}", work, on_success=self._add_and_select,
                         on_failure=self._failed)

    def _add_and_select(self, result) -> None:
        from kdx_gui.gallery.gallery_view import gallery_items

        images, _errors = result
        if not images:
            return
        self.session.add_images(gallery_items(images))
        self.session.set_current(len(self.session.images) - 1)


def _resolved(path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


class FeatureOutputsControls(QWidget):
    """Source (dataset folder or gallery), Run and the status of the shared features job."""

    def __init__(self, outputs: FeatureOutputs, parent: QWidget | None = None):
        super().__init__(parent)
        self.outputs = outputs
        self.source_box = QComboBox()
        for key, title in SOURCES.items():
            self.source_box.addItem(title, key)
        self.source_box.setCurrentIndex(self.source_box.findData(outputs.source))
        self.source_box.currentIndexChanged.connect(self._source_chosen)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self._run_clicked)
        self.status = QLabel()
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Images:"))
        row.addWidget(self.source_box)
        row.addWidget(self.run_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        outputs.statusChanged.connect(self.refresh)
        outputs.session.modelChanged.connect(self.refresh)
        self.refresh()

    def _source_chosen(self, _index: int) -> None:
        self.outputs.set_source(self.source_box.currentData())

    def _run_clicked(self) -> None:
        self.outputs.run()

    def refresh(self, *_args) -> None:
        reason = self.outputs.blocker()
        self.run_button.setEnabled(reason is None and self.outputs.job is None)
        self.run_button.setToolTip(reason or "Compute every model's penultimate features and logits")
        index = self.source_box.findData(self.outputs.source)
        if index != self.source_box.currentIndex():
            self.source_box.blockSignals(True)
            self.source_box.setCurrentIndex(index)
            self.source_box.blockSignals(False)
        text = self.outputs.status or reason or "ready: press Run"
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;" if text.startswith("⚠") else "")
