"""Start-up: show the window at once, import the engine in the background, then open the given files
or the bundled demo. ``--startup-report`` prints when the window first painted and when the first
result appeared (seconds since ``started``) and quits; ``--screenshot PATH`` saves the window once the
first result is drawn and quits.

``main`` installs the process-wide work-arounds (``kdx_gui._runtime``) once, before the window is
built, and freezes the long-lived objects once the engine is imported."""
from __future__ import annotations

import argparse
import json
import sys
import time

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

from kdx_gui import _runtime
from kdx_gui._runtime.gc_policy import freeze_long_lived
from kdx_gui.main_window import MainWindow
from kdx_gui.state.settings import APPLICATION, ORGANISATION


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kdx-gui", description="KDX: explain and measure knowledge distillation")
    parser.add_argument("files", nargs="*", help="model files, images, image folders or a .kdx project")
    parser.add_argument("--no-demo", action="store_true", help="start empty instead of on the bundled demo")
    parser.add_argument("--startup-report", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--screenshot", metavar="PNG", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)  # WIDTHxHEIGHT; default: the last size, fitted to the screen
    return parser.parse_args(argv)


class StartupProbe(QObject):
    """Records the first paint of the window, the engine import and the first complete result."""

    def __init__(self, window: MainWindow, started: float):
        super().__init__(window)
        self.window, self.started = window, started
        self.times: dict[str, float] = {}
        window.installEventFilter(self)
        window.engineLoaded.connect(self._engine_loaded)
        window.scheduler.comparisonReady.connect(self._comparison_ready)
        self.done_callbacks = []

    def _engine_loaded(self) -> None:
        self._mark("engine_ready_s")

    def _mark(self, name: str) -> None:
        self.times.setdefault(name, time.time() - self.started)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint and "first_paint_s" not in self.times:
            self._mark("first_paint_s")
            self.times["engine_ready_at_first_paint"] = self.window.session.engine_ready
        return False

    def _comparison_ready(self) -> None:
        """The first result counts once every model load has finished and each loaded model is in it."""
        session = self.window.session
        loading = any((job.key or "").startswith("load-") or job.title.startswith("loading ")
                      for job in self.window.jobs.jobs if job.state in ("queued", "running"))
        complete = session.comparison is not None and \
            set(session.loaded_models()) <= set(session.comparison.probabilities)
        if loading or not complete or "first_result_s" in self.times:
            return
        self._mark("first_result_s")
        for callback in self.done_callbacks:
            callback()


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    started = time.time() if started is None else started
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    _runtime.install()
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow()
    window.engineLoaded.connect(freeze_long_lived)
    probe = StartupProbe(window, started)
    app.aboutToQuit.connect(window.shutdown)
    if args.size:
        window.resize(*(int(v) for v in args.size.split("x")))
    window.fit_to_screen()
    window.show()
    window.start_engine()
    opened = True
    if args.files:
        window.open_paths(args.files)
    elif not args.no_demo:
        opened = window.open_demo()
    if args.startup_report or args.screenshot:
        finish = lambda: _finish(app, probe, args, window)  # noqa: E731
        if opened and not args.no_demo:
            probe.done_callbacks.append(lambda: QTimer.singleShot(1500 if args.screenshot else 0, finish))
        else:  # nothing will be analysed: report (or photograph) the window once the engine is in
            window.engineLoaded.connect(lambda: QTimer.singleShot(500, finish))
    return app.exec()


def _finish(app: QApplication, probe: StartupProbe, args, window: MainWindow) -> None:
    if args.screenshot:
        window.grab().save(args.screenshot)
    if args.startup_report:
        print(json.dumps({"started": probe.started, **probe.times, "demo": window.demo_message or "loaded"}),
              flush=True)
    app.quit()
