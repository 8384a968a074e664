"""The Scan view's link to the window: runs scans and opens tables as jobs, opens a row's image in the
comparison canvas (adding it to the gallery when it is not there), filters the gallery by the rows shown."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QFileDialog, QWidget

from kdx_gui.scan.scan_dialog import ScanDialog
from kdx_gui.scan.scan_jobs import ScanRequest, read_scan, run_window_scan
from kdx_gui.scan.scan_view import ScanDock

MAX_GALLERY_IMAGES = 500  # "Show in gallery" adds at most this many images that are not there yet


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a == b or Path(a).resolve() == Path(b).resolve()


class ScanController(QObject):
    """Owns the Scan dock; ``message(text)`` for the status bar, ``failed(title, text)`` for errors."""

    message = Signal(str)
    failed = Signal(str, str)

    def __init__(self, session, jobs, gallery, settings, parent: QWidget):
        super().__init__(parent)
        self.session, self.jobs, self.gallery, self.settings = session, jobs, gallery, settings
        self.dock = ScanDock(parent)
        self.view = self.dock.view
        self.view.rowOpened.connect(self.open_in_canvas)
        self.view.galleryFilter.connect(self.filter_gallery)
        self.view.openRequested.connect(self.open_scan_dialog)
        self.session.imagesChanged.connect(self._apply_pending)
        self._pending: str | None = None
        self.last_job = None

    # --- scanning and opening -----------------------------------------------------------------
    def scan_dataset_dialog(self) -> None:
        problem = self.blocker()
        if problem:
            self.failed.emit("Scan dataset", problem)
            return
        dialog = ScanDialog(self.session.dataset_folder or "", self.session.settings.method, self.dock.parentWidget())
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.run(dialog.request())

    def blocker(self) -> str | None:
        """Why a scan cannot start now (None: it can)."""
        if not self.session.engine_ready:
            return "the engine is still loading"
        models = self.session.loaded_models()
        if "teacher" not in models or "student" not in models:
            return "a scan needs a Teacher and a Student model: drop them on their slots"
        return None

    def run(self, request: ScanRequest):
        """Start the scan job (progress and Cancel in the status bar); the table opens when it ends."""
        models = self.session.loaded_models()

        def done(result) -> None:
            summary, columns = result
            self.show(request.out, columns)
            self.message.emit(f"scan: {summary.rows} rows ({summary.scanned} scanned now, {summary.skipped} done "
                              f"before, {summary.unreadable} unreadable) in {Path(request.out).name}")

        self.last_job = self.jobs.submit(
            f"scanning {Path(request.dataset).name}", lambda progress: run_window_scan(models, request, progress),
            on_success=done, on_failure=lambda text: self.failed.emit("Scan dataset", text),
            on_cancel=lambda: self.message.emit("scan cancelled: the rows written so far are kept; scanning the "
                                                "same folder again resumes"))
        return self.last_job

    def open_scan_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.dock.parentWidget(), "Open a scan folder",
                                                  self.settings.last_folder("scans"))
        if folder:
            self.settings.remember_folder("scans", folder)
            self.open_scan(folder)

    def open_scan(self, folder: str):
        if not self.session.engine_ready:
            self.failed.emit("Open scan", "the engine is still loading")
            return None
        self.last_job = self.jobs.submit(f"opening scan {Path(folder).name}", lambda progress: read_scan(folder),
                                         on_success=lambda columns: self.show(folder, columns),
                                         on_failure=lambda text: self.failed.emit("Open scan", text))
        return self.last_job

    def show(self, folder: str, columns: dict) -> None:
        self.view.show_scan(folder, columns)
        self.dock.show()
        self.dock.raise_()

    # --- links to the canvas and the gallery --------------------------------------------------
    def open_in_canvas(self, file: str) -> None:
        """Make the row's image the current one: from the gallery, or added to it first."""
        for index, item in enumerate(self.session.images):
            if _same_file(item.source, file):
                self.session.set_current(index)
                return
        self._pending = file
        self.gallery.add_paths([file])

    def _apply_pending(self) -> None:
        if self._pending is None:
            return
        for index, item in enumerate(self.session.images):
            if _same_file(item.source, self._pending):
                self._pending = None
                self.session.set_current(index)
                return

    def filter_gallery(self, title: str, files: list) -> None:
        """Show in the gallery only the rows shown (adding up to ``MAX_GALLERY_IMAGES`` missing images)."""
        present = {item.source for item in self.session.images if item.source}
        resolved = {str(Path(p).resolve()) for p in present}
        missing = [f for f in files if f not in present and str(Path(f).resolve()) not in resolved]
        if len(missing) > MAX_GALLERY_IMAGES:
            self.message.emit(f"{len(missing)} images are not in the gallery; adding the first {MAX_GALLERY_IMAGES}")
            missing = missing[:MAX_GALLERY_IMAGES]
        if missing:
            self.gallery.add_paths(missing)
        self.gallery.set_scan_filter(title, files)
