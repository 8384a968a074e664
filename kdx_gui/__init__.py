"""KDX's window: PySide6 + pyqtgraph views over the engine's public API.

Grouped by what the user sees, as napari's ``_qt/`` is: ``canvas/`` (the comparison panels and their
controls), ``gallery/``, ``docks/models/`` (the model slots), ``docks/metrics/`` (the metrics tabs),
``dialogs/``, ``widgets/`` (plots, tables, drag and drop shared by the rooms); ``state/`` holds what they
show (the Session, the job queue, the scheduler, projects, settings, the worker-side engine calls);
``_runtime/`` the process-wide work-arounds, installed once by ``app.main``."""
