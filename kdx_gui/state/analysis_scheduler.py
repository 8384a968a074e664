"""Decides when the engine must run again, and runs it as jobs: the comparison of the current image
when the image, a model or an analysis setting changes, then the gallery's predictions for images
that have none. Changes made in one burst (three models loading, a project opening) coalesce into
one run; a newer run supersedes (cancels) an older one of the same kind."""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ANALYSIS_SETTINGS, Session

COALESCE_MS = 30


class AnalysisScheduler(QObject):
    """Subscribes to the session and keeps ``comparison`` and ``predictions`` up to date."""

    comparisonReady = Signal()

    def __init__(self, session: Session, jobs: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.jobs = session, jobs
        self._worker_caches = None  # made by the first job and touched only by jobs, all on the one worker thread
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COALESCE_MS)
        self._timer.timeout.connect(self.run_now)
        self._need_comparison = False
        self._need_predictions = False
        session.modelChanged.connect(self._everything_changed)
        session.imagesChanged.connect(self._images_changed)
        session.currentChanged.connect(self._current_changed)
        session.settingsChanged.connect(self._settings_changed)
        session.engineReady.connect(self._everything_changed)

    def worker_caches(self):
        """The analysis jobs' caches (UniCAM explainers, reference sets); call only from a job."""
        if self._worker_caches is None:
            from kdx_gui.state.analysis import WorkerCaches

            self._worker_caches = WorkerCaches()
        return self._worker_caches

    def _everything_changed(self, *_args) -> None:
        self._schedule(comparison=True, predictions=True)

    def _images_changed(self) -> None:
        self._schedule(comparison=False, predictions=True)

    def _current_changed(self, _index: int) -> None:
        self._schedule(comparison=True, predictions=False)

    def _settings_changed(self, names: list) -> None:
        if ANALYSIS_SETTINGS.intersection(names):
            if {"method", "target_rule", "class_index"}.intersection(names):
                self.session.clear_predictions()
            self._schedule(comparison=True, predictions=True)

    def _schedule(self, comparison: bool, predictions: bool) -> None:
        self._need_comparison |= comparison
        self._need_predictions |= predictions
        self._timer.start()

    def run_now(self) -> None:
        """Submit the pending runs: the current image first, then the gallery."""
        self._timer.stop()
        if not self.session.engine_ready:
            return
        if self._need_comparison:
            self._need_comparison = False
            self._submit_comparison()
        if self._need_predictions:
            self._need_predictions = False
            self._submit_predictions()

    def _submit_comparison(self) -> None:
        session = self.session
        item = session.current_image
        if item is None:
            session.set_comparison(None)
            return
        models = session.loaded_models()
        label = session.label_of(item)
        settings = session.settings
        engine = session.engine
        references = [(other, session.label_of(other)) for other in session.images if other.id != item.id]

        def work(progress):
            from kdx_gui.state import analysis

            return analysis.compare_image(models, item, label, settings, engine, references, self.worker_caches(),
                                          progress)

        session.set_analysing(True)
        self.jobs.submit(f"analysing {item.name}", work, key="comparison", on_success=self._comparison_done,
                         on_failure=self._analysis_ended, on_cancel=self._analysis_ended)

    def _comparison_done(self, comparison) -> None:
        self.session.set_analysing(False)
        current = self.session.current_image
        if current is not None and comparison.image_id == current.id:
            self.session.set_comparison(comparison)
            self.comparisonReady.emit()

    def _analysis_ended(self, *_args) -> None:
        self.session.set_analysing(False)

    def _submit_predictions(self) -> None:
        session = self.session
        models = session.loaded_models()
        if not models:
            return
        known = dict(session.predictions)
        items = [item for item in session.images if item.id not in known]
        if not items:
            return
        labels = [session.label_of(item) for item in items]
        settings = session.settings
        generation = (tuple(id(m.backend) for m in models.values()),
                      tuple(m.target_layer for m in models.values()), settings.method, settings.target_rule,
                      settings.class_index)

        def work(progress):
            from kdx_gui.state import analysis

            return analysis.predict_gallery(models, items, labels, settings, progress)

        def done(predictions) -> None:
            now = session.loaded_models()
            current = (tuple(id(m.backend) for m in now.values()), tuple(m.target_layer for m in now.values()),
                       session.settings.method, session.settings.target_rule, session.settings.class_index)
            if current == generation:
                session.set_predictions({**session.predictions, **predictions})

        self.jobs.submit(f"predicting {len(items)} image(s)", work, key="predictions", on_success=done)
