"""The status bar's view of the job queue: the running job's title, message and progress, Cancel, and
the last failure with a button to dismiss it."""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QWidget

from kdx_gui.state.jobs import Job, JobRunner


class JobStatusWidget(QWidget):
    """Status-bar view of the queue: the running job's title, message and progress, Cancel, last error."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.runner = runner
        self.label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFixedWidth(160)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.clicked.connect(runner.cancel_current)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.setWordWrap(False)
        self.dismiss_button = QToolButton()
        self.dismiss_button.setText("×")
        self.dismiss_button.setToolTip("Dismiss the error")
        self.dismiss_button.clicked.connect(self.clear_error)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.error_label, self.dismiss_button, self.label, self.progress_bar, self.cancel_button):
            layout.addWidget(widget)
        runner.jobQueued.connect(self.refresh)
        runner.jobStarted.connect(self.refresh)
        runner.jobProgressed.connect(self.refresh)
        runner.jobEnded.connect(self.refresh)
        runner.jobFailed.connect(self.show_failure)
        self.clear_error()
        self.refresh()

    def refresh(self, *_args) -> None:
        job = self.runner.current
        pending = [j for j in self.runner.jobs if j.state == "queued" and not j.is_cancel_requested]
        busy = job is not None or bool(pending)
        for widget in (self.label, self.progress_bar):
            widget.setVisible(busy)
        if job is None:
            self.cancel_button.setVisible(False)
            self.label.setText(f"{len(pending)} job(s) waiting" if pending else "")
            return
        text = job.title + (f": {job.message}" if job.message else "")
        if job.is_cancel_requested:
            text += " (cancelling…)"
        if pending:
            text += f"  (+{len(pending)} waiting)"
        self.label.setText(text)
        self.progress_bar.setValue(int(round(job.fraction * 1000)))
        self.cancel_button.setVisible(job.cancellable)
        self.cancel_button.setEnabled(not job.is_cancel_requested)

    def show_failure(self, job: Job) -> None:
        self.error_label.setText(f"⚠ {job.title} failed: {job.error}")
        self.error_label.setToolTip(job.error or "")
        self.error_label.setVisible(True)
        self.dismiss_button.setVisible(True)

    def clear_error(self) -> None:
        self.error_label.clear()
        self.error_label.setVisible(False)
        self.dismiss_button.setVisible(False)
