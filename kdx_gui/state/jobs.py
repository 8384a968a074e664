"""Model work off the GUI thread: a serial queue of jobs that report progress, results and errors as
signals (``kdx_gui.widgets.job_status`` shows the running job with a Cancel button).

Jobs run one at a time on one worker thread: backends attach hooks to their modules for each forward
pass, so two passes on one model must never overlap. A job is ``fn(progress) -> result`` where
``progress`` is the engine's :class:`kdx_engine.jobs.Progress`; after ``cancel()`` the engine raises
``Cancelled`` at its next step, and a job still waiting in the queue never starts.
"""
from __future__ import annotations

import sys
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, Signal

from kdx_engine.jobs import Cancelled, Progress
from kdx_gui.text import first_line

PROGRESS_INTERVAL_S = 0.05  # at most 20 progress signals a second reach the event loop


class Job(QObject):
    """One unit of model work; its signals arrive on the GUI thread."""

    started = Signal()
    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str, str)  # one-line message, traceback
    cancelled = Signal()
    finished = Signal()  # after succeeded, failed or cancelled

    def __init__(self, title: str, fn: Callable[[Progress], Any], cancellable: bool = True, key: str | None = None):
        super().__init__()
        self.title = title
        self.key = key
        self.cancellable = cancellable
        self.state = "queued"
        self.fraction = 0.0
        self.message = ""
        self.error: str | None = None
        self._fn = fn
        self._last_report = 0.0
        self.progress = Progress(self._report)
        self.started.connect(self._mark_running)
        self.progressed.connect(self._remember_progress)
        self.succeeded.connect(self._mark_done)
        self.failed.connect(self._remember_failure)
        self.cancelled.connect(self._mark_cancelled)

    def cancel(self) -> None:
        self.progress.cancel()

    @property
    def is_cancel_requested(self) -> bool:
        return self.progress.cancelled

    def _mark_running(self) -> None:
        self.state = "running"

    def _mark_done(self, _result) -> None:
        self.state = "done"

    def _mark_cancelled(self) -> None:
        self.state = "cancelled"

    def _remember_progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    def _remember_failure(self, message: str, _details: str) -> None:
        self.error = message
        self.state = "failed"

    def _report(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_INTERVAL_S or fraction >= 1.0:
            self._last_report = now
            self.progressed.emit(fraction, message)

    def run(self) -> None:
        """Called on the worker thread."""
        if self.progress.cancelled:
            self.cancelled.emit()
            self.finished.emit()
            return
        self.started.emit()
        try:
            result = self._fn(self.progress)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:  # any failure of model work becomes a message, never a dead window
            details = traceback.format_exc()
            print(details, file=sys.stderr)
            self.failed.emit(first_line(exc), details)
        else:
            if self.progress.cancelled:
                self.cancelled.emit()  # the result came too late to be wanted
            else:
                self.succeeded.emit(result)
        self._fn = None  # the job's inputs can go now
        self.finished.emit()


class _Runnable(QRunnable):
    def __init__(self, job: Job):
        super().__init__()
        self.job = job

    def run(self) -> None:
        self.job.run()


class JobRunner(QObject):
    """The queue: ``submit`` a job; a new job with the same ``key`` supersedes (cancels) the older one."""

    jobQueued = Signal(object)
    jobStarted = Signal(object)
    jobProgressed = Signal(object)
    jobEnded = Signal(object)
    jobFailed = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._jobs: list[Job] = []

    @property
    def jobs(self) -> list[Job]:
        """Jobs queued or running, oldest first."""
        return list(self._jobs)

    @property
    def current(self) -> Job | None:
        running = [job for job in self._jobs if job.state == "running"]
        return running[0] if running else None

    def submit(
        self,
        title: str,
        fn: Callable[[Progress], Any],
        *,
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        cancellable: bool = True,
        key: str | None = None,
    ) -> Job:
        if key is not None:
            for older in self._jobs:
                if older.key == key:
                    older.cancel()
        job = Job(title, fn, cancellable=cancellable, key=key)
        if on_success is not None:
            job.succeeded.connect(on_success)
        if on_failure is not None:
            job.failed.connect(lambda message, _details: on_failure(message))
        if on_cancel is not None:
            job.cancelled.connect(on_cancel)
        job.started.connect(self._job_started)
        job.progressed.connect(self._job_progressed)
        job.failed.connect(self._job_failed)
        job.finished.connect(self._job_finished)
        self._jobs.append(job)
        self.jobQueued.emit(job)
        self._pool.start(_Runnable(job))
        return job

    # Bound methods, not lambdas: a lambda holding the runner would keep it (and the window) alive.
    def _job_started(self) -> None:
        self.jobStarted.emit(self.sender())

    def _job_progressed(self, *_args) -> None:
        self.jobProgressed.emit(self.sender())

    def _job_failed(self, *_args) -> None:
        self.jobFailed.emit(self.sender())

    def _job_finished(self) -> None:
        job = self.sender()
        if job in self._jobs:
            self._jobs.remove(job)
        self.jobEnded.emit(job)
        job.deleteLater()  # drops its connections, and with them the callbacks' references

    def cancel_all(self) -> None:
        for job in self._jobs:
            if job.cancellable:
                job.cancel()

    def cancel_current(self) -> None:
        job = self.current
        if job is not None and job.cancellable:
            job.cancel()

    def is_idle(self) -> bool:
        return not self._jobs

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        """Cancel everything, wait for the worker thread, and deliver the jobs' last signals now, while
        the objects they call still exist (before the window is destroyed)."""
        self.cancel_all()
        finished = self._pool.waitForDone(timeout_ms)
        QCoreApplication.sendPostedEvents()
        return finished
