"""The main window: model slots (left), canvas controls, comparison canvas and gallery (centre), the
metrics dock (right), jobs in the status bar; menus for every action; settings and project files.

It imports no torch: the engine is imported by the first job (``start_engine``), so the window can
be shown first.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QDockWidget,
    QVBoxLayout,
    QWidget,
)

from kdx_gui.canvas.canvas_controls import CanvasControls
from kdx_gui.canvas.comparison_canvas import CanvasPane, ComparisonCanvas
from kdx_gui.demo import Demo, find_demo
from kdx_gui.dialogs.export_dialog import ask_export
from kdx_gui.docks.metrics.metrics_dock import MetricsDock
from kdx_gui.docks.models.model_slot import ModelSlot
from kdx_gui.gallery.gallery_view import GalleryView
from kdx_gui.scan.scan_controller import ScanController
from kdx_gui.state.analysis_scheduler import AnalysisScheduler
from kdx_gui.state.attention_reader import AttentionReader
from kdx_gui.state.engine import import_engine
from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.project import PROJECT_SUFFIX, Project, ProjectError, load_project, save_project
from kdx_gui.state.session import ROLE_TITLES, ROLES, Session, ViewSettings
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.drag_drop import accept_file_drag, local_files
from kdx_gui.widgets.job_status import JobStatusWidget
from kdx_gui.widgets.plots import configure_pyqtgraph

COMPACT_WIDTH = 1300  # narrower windows tabify the Models dock with the Metrics dock
MODELS_DOCK_MIN, METRICS_DOCK_MIN = 200, 240
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
                  ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}


def split_paths(paths: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(projects, images and folders, model files) among command-line or dropped paths."""
    projects, images, models = [], [], []
    for path in paths:
        p = Path(path)
        if p.suffix.lower() == PROJECT_SUFFIX:
            projects.append(path)
        elif p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            models.append(path)
    return projects, images, models


PREFERRED_SIZE = (1600, 1000)
SCREEN_MARGIN = 0.96  # of the available height and width a first or restored window may take


def fitted_geometry(window: QRect, available: QRect) -> QRect:
    """``window`` made to fit ``available`` (the screen less its panels): no larger than ``SCREEN_MARGIN``
    of it, moved inside it; a window that fits already is left where it is."""
    if available.isEmpty():
        return QRect(window)
    width = min(window.width(), int(available.width() * SCREEN_MARGIN))
    height = min(window.height(), int(available.height() * SCREEN_MARGIN))
    x = min(max(window.x(), available.left()), available.right() + 1 - width)
    y = min(max(window.y(), available.top()), available.bottom() + 1 - height)
    return QRect(x, y, width, height)


class MainWindow(QMainWindow):
    engineLoaded = Signal()

    def __init__(self, settings: AppSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        configure_pyqtgraph()
        self.setWindowTitle("KDX — knowledge distillation explorer")
        self.settings = settings or AppSettings()
        self.session = Session(self, ViewSettings(colormap=self.settings.colormap(), opacity=self.settings.opacity()))
        self.jobs = JobRunner(self)
        self.scheduler = AnalysisScheduler(self.session, self.jobs, self)
        self.attention_reader = AttentionReader(self.session, self.jobs, self)
        self.project_path: str | None = None
        self._pending_current: int | None = None
        self._pending_layers: dict[str, str] = {}
        self.demo_message = ""
        self.last_error = ""

        self.slots = {role: ModelSlot(role, self.session, self.jobs, self.settings) for role in ROLES}
        self.controls = CanvasControls(self.session, self.settings)
        self.canvas = ComparisonCanvas(self.session)
        self.canvas_pane = CanvasPane(self.canvas)
        self.compact = False
        self.gallery = GalleryView(self.session, self.jobs, self.settings)
        self.metrics = MetricsDock(self.session, self.jobs, self.settings, self)
        self.scan = ScanController(self.session, self.jobs, self.gallery, self.settings, self)
        self.scan.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.scan.failed.connect(self.show_error)
        self._build_layout()
        self._build_status_bar()
        self._build_menus()
        self.session.imagesChanged.connect(self._apply_pending_current)
        self.session.modelChanged.connect(self._apply_pending_layer)
        self.session.settingsChanged.connect(self._remember_view)
        self.setAcceptDrops(True)
        self.resize(*PREFERRED_SIZE)
        geometry, state = self.settings.geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.fit_to_screen()
        if state is not None:
            self.restoreState(state)
            # The layout is put back as it was saved: a narrow window's tabbed docks come apart again
            # on the first resize to a wide window (set_compact acts on crossing the width).
            self.compact = self.settings.window_was_compact()

    def fit_to_screen(self) -> None:
        """Keep the window (a first start's preferred size, a restored one or ``--size``) on its screen:
        no larger than the screen's available area, and inside it, so no dock or button lies off-screen."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None or self.isMaximized() or self.isFullScreen():
            return
        fitted = fitted_geometry(self.geometry(), screen.availableGeometry())
        if fitted != self.geometry():
            self.setGeometry(fitted)

    # --- layout --------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        slots = QWidget()
        column = QVBoxLayout(slots)
        column.setContentsMargins(4, 4, 4, 4)
        for slot in self.slots.values():
            column.addWidget(slot)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(slots)
        self.models_dock = QDockWidget("Models", self)
        self.models_dock.setObjectName("models_dock")
        self.models_dock.setWidget(scroll)
        self.models_dock.setMinimumWidth(MODELS_DOCK_MIN)
        scroll.setMinimumWidth(0)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.models_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.metrics)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.scan.dock)
        self.scan.dock.hide()  # shown when a scan opens
        self.metrics.setMinimumWidth(METRICS_DOCK_MIN)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.setSpacing(0)
        top_layout.addWidget(self.controls)
        top_layout.addWidget(self.canvas_pane, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.gallery)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([700, 240])
        self.setCentralWidget(self.splitter)
        self.resizeDocks([self.models_dock, self.metrics], [300, 440], Qt.Orientation.Horizontal)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.set_compact(self.width() < COMPACT_WIDTH)

    def set_compact(self, compact: bool) -> None:
        """On a narrow window the Models dock becomes a tab beside Metrics (both on the right), so the
        canvas keeps the width; a wider window puts it back on the left. Only on crossing the width,
        so docks the user moved stay where they are."""
        if compact == self.compact:
            return
        self.compact = compact
        models, metrics = self.models_dock, self.metrics
        if models.isFloating() or metrics.isFloating():
            return
        if compact:
            if self.dockWidgetArea(models) != self.dockWidgetArea(metrics):
                self.tabifyDockWidget(metrics, models)
                metrics.raise_()
            self.resizeDocks([metrics], [max(METRICS_DOCK_MIN, min(320, self.width() // 3))],
                             Qt.Orientation.Horizontal)
            self.splitter.setSizes([3 * self.splitter.height() // 4, self.splitter.height() // 4])
        else:
            if self.dockWidgetArea(models) == self.dockWidgetArea(metrics):
                self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, models)
                models.show()
            self.resizeDocks([models, metrics], [300, 440], Qt.Orientation.Horizontal)

    def _build_status_bar(self) -> None:
        self.engine_label = QLabel("loading engine…")
        self.statusBar().addWidget(self.engine_label)
        self.job_status = JobStatusWidget(self.jobs)
        self.statusBar().addPermanentWidget(self.job_status)

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New", self.new_session, QKeySequence.StandardKey.New,
                     "Empty the session: models, images, checkpoints and results")
        open_menu = file_menu.addMenu("Open &model")
        self.open_actions = {}
        for index, role in enumerate(ROLES, start=1):
            self.open_actions[role] = self._action(open_menu, f"{ROLE_TITLES[role]}…", self.slots[role].open_dialog,
                                                   f"Ctrl+{index}", f"Open a model file as the {ROLE_TITLES[role]}")
        self._action(file_menu, "Add &images…", self.gallery.open_dialog, "Ctrl+I")
        self._action(file_menu, "Add image &folder…", self.gallery.open_folder_dialog, "Ctrl+Shift+I")
        self.paste_action = self._action(file_menu, "&Paste image", self.gallery.paste, QKeySequence.StandardKey.Paste)
        file_menu.addSeparator()
        self._action(file_menu, "&Open project…", self.open_project_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "&Save project", self.save_project, QKeySequence.StandardKey.Save)
        self._action(file_menu, "Save project &as…", self.save_project_as, QKeySequence.StandardKey.SaveAs)
        self._action(file_menu, "Open the &demo", self.open_demo)
        file_menu.addSeparator()
        self._action(file_menu, "Remove selected images", self.gallery.remove_selected, None,
                     "Take the selected images out of the gallery (Delete in the gallery)")
        self._action(file_menu, "&Close all", self.close_all, "Ctrl+Shift+W",
                     "Unload every model and image; the view settings and the project file name stay")
        file_menu.addSeparator()
        self._action(file_menu, "&Export figure…", self.export_figure_dialog, "Ctrl+E",
                     "A figure panel (PNG, SVG, PDF) of the current, selected or shown images, with maps and metrics")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view_menu = bar.addMenu("&View")
        self._action(view_menu, "&Reset zoom", self.canvas.reset_zoom, "Ctrl+0")
        self.shared_action = self._action(view_menu, "&Shared map scale", self._shared_scale_toggled, "Ctrl+Alt+S")
        self.shared_action.setCheckable(True)
        self.session.settingsChanged.connect(self._sync_shared_action)
        view_menu.addSeparator()
        view_menu.addAction(self.models_dock.toggleViewAction())
        view_menu.addAction(self.metrics.toggleViewAction())
        view_menu.addAction(self.scan.dock.toggleViewAction())

        analysis_menu = bar.addMenu("&Analysis")
        self._action(analysis_menu, "&Dataset metrics…", self.dataset_metrics_dialog, "Ctrl+M")
        self.scan_action = self._action(analysis_menu, "&Scan dataset…", self.scan.scan_dataset_dialog, "Ctrl+Shift+D",
                                        "Explain and score every image of a dataset into one table (a job)")
        self._action(analysis_menu, "&Open scan…", self.scan.open_scan_dialog, None, "Open a scan folder's table")
        self._action(analysis_menu, "&Cancel running job", self.jobs.cancel_current, "Esc")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About KDX", self.about)

    def _shared_scale_toggled(self, checked: bool) -> None:
        self.session.update_settings(shared_scale=checked)

    def _sync_shared_action(self, *_args) -> None:
        self.shared_action.setChecked(self.session.settings.shared_scale)

    # --- engine and start-up -------------------------------------------------------------------
    def start_engine(self) -> None:
        """Import the engine in the first job; everything submitted later runs after it."""
        self.jobs.submit("loading engine…", import_engine, cancellable=False, on_success=self._engine_loaded,
                         on_failure=self._engine_failed)

    def _engine_failed(self, message: str) -> None:
        self.engine_label.setText(f"⚠ engine failed to load: {message}")

    def _engine_loaded(self, status) -> None:
        missing = ", ".join(sorted(status.missing))
        self.engine_label.setText("engine ready" + (f" (not in this build: {missing})" if missing else ""))
        self.session.set_engine(status)
        self.engineLoaded.emit()

    def open_paths(self, paths: list[str]) -> None:
        """Open command-line or dropped paths: projects, images/folders, and models into free slots."""
        projects, images, models = split_paths([str(p) for p in paths])
        for project in projects[:1]:
            self.open_project(project)
        free = [role for role in ROLES if self.session.models[role] is None]
        for role, path in zip(free, models):
            self.slots[role].load(path)
        for path in models[len(free):]:
            self.statusBar().showMessage(f"{Path(path).name}: all three model slots are taken", 8000)
        if images:
            self.gallery.add_paths(images)

    # --- session -------------------------------------------------------------------------------
    def confirm_discard(self, action: str) -> bool:
        """True when the session is empty or the user agrees to discard it."""
        if self.session.is_empty():
            return True
        models, images = len(self.session.loaded_models()), len(self.session.images)
        answer = QMessageBox.question(
            self, action, f"{action} replaces the session: {models} model(s) and {images} image(s) are unloaded "
            "(files on disk are not touched). Continue?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def new_session(self) -> bool:
        """File ▸ New: an empty session (asks first when something is loaded); no project file."""
        if not self.confirm_discard("New"):
            return False
        self._clear_session()
        self.project_path = None
        self.statusBar().showMessage("new session", 5000)
        return True

    def close_all(self) -> bool:
        """File ▸ Close all: unload every model and image (asks first); the project file name stays."""
        if not self.confirm_discard("Close all"):
            return False
        self._clear_session()
        self.statusBar().showMessage("closed all models and images", 5000)
        return True

    def _clear_session(self) -> None:
        self.jobs.cancel_all()  # models or images still loading belong to the old session (the engine's load stays)
        self._pending_current, self._pending_layers = None, {}
        self.session.clear()
        self.gallery.message.setVisible(False)

    def open_demo(self) -> bool:
        """Load the bundled demo; False (and a message in the window) when it is not built. Over a loaded
        session it asks to replace it (the demo's models would not match the loaded ones), or does nothing."""
        demo = find_demo()
        if not isinstance(demo, Demo):
            self.demo_message = demo
            self.statusBar().showMessage(demo)
            self.gallery.show_message(demo)
            return False
        if not self.confirm_discard("Open the demo"):
            return False
        if not self.session.is_empty():
            self._clear_session()
            self.project_path = None
        self.demo_message = ""
        for role, path in demo.models.items():
            self.slots[role].load(path)
        if demo.samples:
            self.gallery.add_paths(demo.samples)
            if not demo.dataset and 4 <= demo.sample_count < self.session.settings.reference_n:
                self.session.update_settings(reference_n=demo.sample_count)  # the other samples are the reference
        for name, path in demo.checkpoints.items():
            self.session.add_checkpoint(path, name)
        if demo.dataset:  # a labelled class_name/image tree: for dataset metrics and the UniCAM reference set
            self.session.set_dataset_folder(demo.dataset)
            self.controls.set_reference_folder(demo.dataset)
        return True

    # --- projects ------------------------------------------------------------------------------
    def current_project(self) -> tuple[Project, int]:
        """The session as a Project, and how many pasted images (no file) it leaves out."""
        models = {role: {"path": m.info.path, "target_layer": m.target_layer}
                  for role, m in self.session.loaded_models().items()}
        images = [item.source for item in self.session.images if item.source]
        pasted = len(self.session.images) - len(images)
        current_item = self.session.current_image
        current = images.index(current_item.source) if current_item is not None and current_item.source else -1
        return Project(models, images, current, self.session.settings, self.session.dataset_folder,
                       dict(self.session.extra_checkpoints)), pasted

    def save_project(self) -> bool:
        if not self.project_path:
            return self.save_project_as()
        return self.save_project_to(self.project_path)

    def save_project_as(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save project", self.settings.last_folder("projects"),
                                              f"KDX projects (*{PROJECT_SUFFIX})")
        if not path:
            return False
        if not path.endswith(PROJECT_SUFFIX):
            path += PROJECT_SUFFIX
        return self.save_project_to(path)

    def save_project_to(self, path: str) -> bool:
        project, pasted = self.current_project()
        try:
            save_project(project, path)
        except OSError as exc:
            self.show_error("Project not saved", f"{Path(path).name}: {exc.strerror or exc}")
            return False
        self.project_path = path
        self.settings.remember_folder("projects", path)
        note = f" ({pasted} pasted image(s) have no file and are not in the project)" if pasted else ""
        self.statusBar().showMessage(f"saved {Path(path).name}{note}", 8000)
        return True

    def open_project_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", self.settings.last_folder("projects"),
                                              f"KDX projects (*{PROJECT_SUFFIX});;All files (*)")
        if path:
            self.open_project(path)

    def open_project(self, path: str) -> bool:
        """Replace the session by the project's models, images and view settings."""
        try:
            project = load_project(path)
        except ProjectError as exc:
            self.show_error("Cannot open project", str(exc))
            return False
        self.project_path = str(path)
        self.settings.remember_folder("projects", path)
        missing = [p for p in [m["path"] for m in project.models.values()] + project.images if not Path(p).exists()]
        for role in ROLES:
            self.session.set_model(role, None)
        self.session.clear_images()
        self.session.update_settings(**project.view.to_json())
        self._pending_layers = {role: m["target_layer"] for role, m in project.models.items() if m["target_layer"]}
        for role, entry in project.models.items():
            if Path(entry["path"]).exists():
                self.slots[role].load(entry["path"])
        images = [p for p in project.images if Path(p).exists()]
        self._pending_current = project.current if 0 <= project.current < len(images) else None
        if images:
            self.gallery.add_paths(images)
        self.session.set_checkpoints(project.checkpoints)
        self.session.set_dataset_folder(project.dataset_folder)
        if missing:
            self.show_error("Some project files are missing",
                            f"{Path(path).name}: {len(missing)} file(s) not found, opened without them: "
                            + ", ".join(Path(p).name for p in missing[:5]))
        self.statusBar().showMessage(f"opened {Path(path).name}", 8000)
        return True

    def _apply_pending_current(self) -> None:
        if self._pending_current is not None and self._pending_current < len(self.session.images):
            self.session.set_current(self._pending_current)
            self._pending_current = None

    def _apply_pending_layer(self, role: str) -> None:
        model = self.session.models[role]
        layer = self._pending_layers.get(role)
        if model is not None and layer and layer in model.backend.layer_names():
            del self._pending_layers[role]
            self.session.set_target_layer(role, layer)

    def dragEnterEvent(self, event) -> None:
        accept_file_drag(event)

    def dropEvent(self, event) -> None:
        """Files dropped anywhere else than a slot or the gallery: as on the command line."""
        files = local_files(event)
        if files:
            event.acceptProposedAction()
            self.open_paths(files)

    # --- export --------------------------------------------------------------------------------
    def export_figure_dialog(self) -> None:
        chosen = ask_export(self)
        if chosen is not None:
            self.export_figure(*chosen, overwrite=True)  # the user confirmed any replacement

    def export_items(self, which: str) -> list:
        """The gallery images an export covers: the current one, the selected ones, or all shown."""
        by_id = {item.id: item for item in self.session.images}
        if which == "current":
            return [self.session.current_image] if self.session.current_image is not None else []
        ids = self.gallery.selected_ids() if which == "selected" else self.gallery.visible_ids()
        return [by_id[i] for i in ids if i in by_id]

    def export_figure(self, request, path: str, overwrite: bool = False):
        """Export a figure as a job; returns the job (None when there is nothing to export)."""
        session = self.session
        items = self.export_items(request.images)
        if not session.engine_ready or not items or not session.loaded_models():
            self.show_error("Export figure", "Nothing to export: load a model and choose at least one image.")
            return None
        models, settings, engine = session.loaded_models(), session.settings, session.engine
        chosen = [(item, session.label_of(item)) for item in items]
        gallery = [(item, session.label_of(item)) for item in session.images]
        caches, dataset_folder = self.scheduler.worker_caches, session.dataset_folder

        def work(progress):
            from kdx_gui.state import analysis

            return analysis.export_figure(models, chosen, settings, engine, gallery, caches(), request, path,
                                          overwrite, progress, dataset_folder)

        def done(result) -> None:
            self.statusBar().showMessage(f"exported {result.figure.name} and {result.folder.name}/", 15000)

        return self.jobs.submit(f"exporting {Path(path).name}", work, on_success=done,
                                on_failure=lambda message: self.show_error("Export figure", message))

    # --- misc ----------------------------------------------------------------------------------
    def dataset_metrics_dialog(self) -> None:
        self.metrics.show()
        self.metrics.show_tab("layers")
        if not self.session.dataset_folder:
            self.metrics.dataset_runner.choose_folder()
        if self.metrics.dataset_runner.blocker() is None:
            self.metrics.dataset_runner.run()

    def _remember_view(self, names: list) -> None:
        if {"colormap", "opacity"}.intersection(names):
            self.settings.save_view(self.session.settings.colormap, self.session.settings.opacity)

    def show_error(self, title: str, text: str) -> None:
        self.last_error = text
        self.statusBar().showMessage(text, 15000)
        QMessageBox.warning(self, title, text)

    def about(self) -> None:
        QMessageBox.about(self, "About KDX", "KDX explains and measures knowledge distillation of image "
                          "classifiers: CAMs, UniCAM distilled/residual maps, FSS, RS, CKA, VAM and KDExplainer "
                          "views. Everything runs offline.")

    def shutdown(self) -> None:
        """Keep the settings and stop the worker thread (before the application quits)."""
        self.settings.save_window(self.saveGeometry(), self.saveState(), self.compact)
        self.settings.save_view(self.session.settings.colormap, self.session.settings.opacity)
        self.settings.sync()
        self.jobs.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
