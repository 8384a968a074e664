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


def test_the_plot_strip_from_the_window_equals_kdx_export_plots(window, qtbot, model_files, image_tree, tmp_path,
                                                                 monkeypatch):
    errors = []
    monkeypatch.setattr("kdx_gui.main_window.QMessageBox.warning", lambda *args: errors.append(args[2]))
    reference = write_image_tree(tmp_path / "reference", per_class=2, seed=9)
    dataset = write_image_tree(tmp_path / "dataset", per_class=3, seed=4)
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    window.session.update_settings(reference_folder=str(reference), reference_n=6)
    window.session.set_dataset_folder(None)
    wait_idle(qtbot, window)
    request = ExportRequest(images="current", columns=("teacher", "student"), format="png", dpi=60,
                            plots=("kl", "embeddings"))
    job = window.export_figure(request, str(tmp_path / "none.png"))
    qtbot.waitUntil(lambda: job.state in ("done", "failed"), timeout=60000)
    assert job.state == "failed" and "dataset folder" in window.last_error and errors
    assert not (tmp_path / "none.png").exists()

    window.session.set_dataset_folder(str(dataset))
    wait_idle(qtbot, window)
    from_window = tmp_path / "window.png"
    job = window.export_figure(request, str(from_window))
    qtbot.waitUntil(lambda: job.state in ("done", "failed"), timeout=120000)
    assert job.state == "done", job.error
    manifest = json.loads((tmp_path / "window_data" / "manifest.json").read_text())
    record = manifest["distillation_plots"]
    assert record["dataset"] == str(dataset) and record["n"] == 12 and record["projection"] == "pca"
    assert set(record["dark_knowledge"]["curves"]) == {"student", "base"}

    from_cli = tmp_path / "cli.png"
    assert main(["export", "--teacher", model_files["teacher"], "--student", model_files["student"],
                 "--base", model_files["base"], "--reference", str(reference), "--n", "6",
                 manifest["images"][0]["file"], "--columns", "teacher,student", "--plots", "kl,embeddings",
                 "--plots-dataset", str(dataset), "--out", str(from_cli), "--dpi", "60"]) == 0
    a = np.asarray(Image.open(from_window).convert("RGB"))
    b = np.asarray(Image.open(from_cli).convert("RGB"))
    assert a.shape == b.shape and np.array_equal(a, b)
    plain = tmp_path / "plain.png"
    job = window.export_figure(ExportRequest(images="current", columns=("teacher", "student"), dpi=60), str(plain))
    qtbot.waitUntil(lambda: job.state in ("done", "failed"), timeout=60000)
    assert Image.open(plain).size[1] < a.shape[0]  # the strip adds height under the rows


def test_the_dialog_offers_the_plots_only_with_a_dataset_folder(qtbot):
    from kdx_gui.dialogs.export_dialog import ExportDialog

    without = ExportDialog(("teacher", "student"), None)
    qtbot.addWidget(without)
    without.plots["kl"].setChecked(True)
    assert not without.plots["kl"].isEnabled() and without.request().plots == ()
    with_folder = ExportDialog(("teacher", "student"), "/data/val")
    qtbot.addWidget(with_folder)
    with_folder.plots["embeddings"].setChecked(True)
    assert with_folder.request().plots == ("embeddings",)


def test_cancel_during_the_dataset_plots_stops_the_export_and_writes_nothing(window, qtbot, model_files, image_tree,
                                                                             tmp_path):
    import pytest

    from kdx_engine.jobs import Cancelled, Progress
    from kdx_gui.state import analysis

    dataset = write_image_tree(tmp_path / "dataset", per_class=3, seed=4)
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    session, seen = window.session, []

    def cancel_in_the_plots(fraction, message):
        seen.append((fraction, message))
        if message.startswith("dataset plots"):
            progress.cancel()

    progress = Progress(cancel_in_the_plots)
    item = session.current_image
    request = ExportRequest(images="current", columns=("teacher",), dpi=60, plots=("kl",))
    with pytest.raises(Cancelled):
        analysis.export_figure(session.loaded_models(), [(item, session.label_of(item))], session.settings,
                               session.engine, [(item, session.label_of(item))], window.scheduler.worker_caches(),
                               request, str(tmp_path / "cancelled.png"), False, progress, str(dataset))
    plot_steps = [f for f, m in seen if m.startswith("dataset plots")]
    assert plot_steps and all(0.6 <= f <= 0.9 for f in plot_steps)  # on the bar after the comparisons
    assert not (tmp_path / "cancelled.png").exists() and not (tmp_path / "cancelled_data").exists()
