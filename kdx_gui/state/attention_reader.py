"""Reads VAM attention and KDExplainer routing from the weights of the slots' models and of any extra
checkpoint the user adds (a VAM student or a KDExplainer need not sit in a slot), in a job, whenever
that set of files changes; the records land in ``session.attention``."""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import Session


class AttentionReader(QObject):
    """Re-reads attention and routing whenever the set of checkpoints changes."""

    def __init__(self, session: Session, jobs: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.jobs = session, jobs
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.read)
        for signal in (session.modelChanged, session.attentionSourcesChanged, session.engineReady):
            signal.connect(self._sources_changed)

    def _sources_changed(self, *_args) -> None:
        self._timer.start()

    def read(self) -> None:
        if not self.session.engine_ready:
            return
        sources, engine = self.session.attention_sources(), self.session.engine

        def work(progress):
            from kdx_gui.state import analysis

            return analysis.read_attention(sources, engine, progress)

        self.jobs.submit("reading VAM attention and routing", work, key="attention",
                         on_success=self.session.set_attention)
