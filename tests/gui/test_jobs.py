"""Jobs: model work off the GUI thread with progress and Cancel in the status bar; the event loop keeps
running during a dataset-metrics job, Cancel stops it within a second, and a failing job is shown
while the window keeps working."""
import time

import pytest
from PySide6.QtCore import QTimer

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle, write_image_tree

TICK_MS = 10
MAX_STALL_S = 0.1


class StallMonitor:
    """A 10 ms timer on the GUI thread; the largest gap between its ticks is the longest stall."""

    def __init__(self):
        self.last = None
        self.longest = 0.0
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
        self.last = now

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()


@pytest.fixture()
def dataset(tmp_path):
    return write_image_tree(tmp_path / "dataset", per_class=8, seed=3)


def test_a_dataset_metrics_job_never_stalls_the_event_loop(window, qtbot, model_files, dataset):
    load_models(qtbot, window, model_files, roles=("teacher", "student"))
    runner, status = window.metrics.dataset_runner, window.job_status
    seen_progress = []

    with StallMonitor() as monitor:
        job = runner.run(str(dataset))
        job.progressed.connect(lambda fraction, message: seen_progress.append(
            (fraction, status.progress_bar.value(), status.label.text(), not status.cancel_button.isHidden())))
        qtbot.waitUntil(lambda: job.state in ("done", "failed", "cancelled"), timeout=120000)

    assert job.state == "done", job.error
    assert monitor.longest < MAX_STALL_S, f"event loop stalled {monitor.longest * 1000:.0f} ms"
    assert len(seen_progress) >= 2
    assert any(0 < bar < 1000 and "dataset metrics on dataset" in text and cancel
               for _f, bar, text, cancel in seen_progress)
    metrics = window.session.dataset_metrics
    assert metrics.n == 32 and metrics.n_labelled == 32
    assert "n = 32 images (32 labelled)" in runner.status.text()
    wait_idle(qtbot, window)
    assert status.progress_bar.isHidden() and status.cancel_button.isHidden()


@pytest.fixture()
def big_dataset(tmp_path):
    return write_image_tree(tmp_path / "big", per_class=100, seed=4)


def test_cancel_stops_a_dataset_metrics_job_within_a_second(window, qtbot, model_files, big_dataset):
    load_models(qtbot, window, model_files, roles=("teacher", "student"))
    runner, status = window.metrics.dataset_runner, window.job_status
    job = runner.run(str(big_dataset))
    # cancel while features are extracted (the longest phase since intervals are jackknifed)
    qtbot.waitUntil(lambda: job.state != "queued" and job.fraction > 0.05 or job.state in ("failed", "done"),
                    timeout=60000)
    assert job.state == "running", job.error
    assert not status.cancel_button.isHidden() and status.cancel_button.isEnabled()

    start = time.perf_counter()
    status.cancel_button.click()
    qtbot.waitUntil(lambda: job.state == "cancelled", timeout=1000)
    assert time.perf_counter() - start < 1.0
    assert window.session.dataset_metrics is None
    assert "cancelled" in runner.status.text()
    wait_idle(qtbot, window)
    assert status.cancel_button.isHidden()


def test_a_failing_job_is_shown_and_the_window_keeps_working(window, qtbot, model_files, tmp_path):
    load_models(qtbot, window, model_files, roles=("teacher", "student"))
    too_small = write_image_tree(tmp_path / "small", per_class=2)
    runner, status = window.metrics.dataset_runner, window.job_status

    job = runner.run(str(too_small))
    wait_idle(qtbot, window)
    assert job.state == "failed"
    assert "n ≥ 32" in status.error_label.text() and not status.error_label.isHidden()
    assert "⚠ dataset metrics" in runner.status.text()

    def broken(progress):
        progress.update(0.5, "half way")
        raise RuntimeError("the engine broke on purpose")

    window.jobs.submit("a broken job", broken)
    wait_idle(qtbot, window)
    assert status.error_label.text() == "⚠ a broken job failed: the engine broke on purpose"

    window.gallery.add_paths([str(too_small)])
    wait_idle(qtbot, window)
    assert len(window.session.images) == 8
    assert window.session.comparison is not None
    assert window.session.comparison.panels["teacher"].values is not None
    status.dismiss_button.click()
    assert status.error_label.isHidden()
