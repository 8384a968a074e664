"""File ▸ Export figure… in the window: the same renderer as ``kdx export``, so the same images and
settings give the same PNG, pixel for pixel."""
import json

import numpy as np
from PIL import Image

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle, write_image_tree
from kdx_engine.cli import main
from kdx_gui.dialogs.export_dialog import ExportRequest


def test_the_window_and_kdx_export_write_the_same_png(window, qtbot, model_files, image_tree, tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr("kdx_gui.main_window.QMessageBox.warning", lambda *args: warnings.append(args[2]))
    reference = write_image_tree(tmp_path / "reference", per_class=2, seed=9)
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    window.session.update_settings(reference_folder=str(reference), reference_n=6)
    wait_idle(qtbot, window)

    from_window = tmp_path / "window.png"
    job = window.export_figure(ExportRequest(images="shown", format="png", dpi=80), str(from_window))
    qtbot.waitUntil(lambda: job.state in ("done", "failed"), timeout=120000)
    assert job.state == "done", job.error
    manifest = json.loads((tmp_path / "window_data" / "manifest.json").read_text())
    files = [image["file"] for image in manifest["images"]]
    assert len(files) == len(window.session.images) == 8
    assert all(image["true_class"] is not None for image in manifest["images"])

    from_cli = tmp_path / "cli.png"
    assert main(["export", "--teacher", model_files["teacher"], "--student", model_files["student"],
                 "--base", model_files["base"], "--reference", str(reference), "--n", "6", *files,
                 "--out", str(from_cli), "--dpi", "80"]) == 0
    a = np.asarray(Image.open(from_window).convert("RGB"))
    b = np.asarray(Image.open(from_cli).convert("RGB"))
    assert a.shape == b.shape
    assert np.array_equal(a, b)

    # a second export to the same file is refused without consent, and the first stays
    before = from_window.read_bytes()
    job = window.export_figure(ExportRequest(images="current", format="png", dpi=80), str(from_window))
    qtbot.waitUntil(lambda: job.state in ("done", "failed"), timeout=60000)
    assert job.state == "failed" and "exists" in window.last_error and warnings
    assert from_window.read_bytes() == before
