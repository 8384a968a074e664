"""Screenshots of the dark-knowledge and embedding views on the bundled demo, driven through the widgets:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_distillation_screenshots.py

Opens the demo as `python main.py` does, computes the features of the demo dataset
(kdx_engine/resources/dataset, 128 images) from the Embeddings tab, and writes predictions_tau.png
(Predictions at the Student's sidecar τ = 4), dark_knowledge.png and embeddings.png (a point
clicked, so the gallery and canvas show that image) beside this file; each is the whole window.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from make_screenshots import settle, shoot  # noqa: E402

from kdx_gui import _runtime  # noqa: E402
from kdx_gui.main_window import MainWindow  # noqa: E402


def main() -> None:
    settings_home = tempfile.TemporaryDirectory()
    os.environ["XDG_CONFIG_HOME"] = settings_home.name
    app = QApplication([sys.argv[0]])
    _runtime.install()
    app.setOrganizationName("KDX-screenshots")
    app.setApplicationName("KDX-screenshots")
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.start_engine()
    settle(app, window)
    if not window.open_demo():
        raise SystemExit("the demo did not open")
    settle(app, window)
    window.session.set_current(2)
    settle(app, window)
    window.resizeDocks([window.metrics], [760], Qt.Orientation.Horizontal)  # room for the side-by-side plots
    window.metrics.show_tab("predictions")
    shoot(app, window, "predictions_tau.png")
    view = window.metrics.show_tab("embeddings")
    view.outputs.set_source("dataset")
    view.outputs.run()
    settle(app, window, timeout=600)
    view.select_row(40)
    settle(app, window)
    shoot(app, window, "embeddings.png")
    window.metrics.show_tab("dark_knowledge")
    settle(app, window)
    shoot(app, window, "dark_knowledge.png")
    window.close()
    settings_home.cleanup()


if __name__ == "__main__":
    main()
