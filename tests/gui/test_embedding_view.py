"""The Embeddings tab: T, S and B penultimate features projected side by side, per-class k-NN accuracy
and T–S overlap, and selection linked both ways between the plots and the gallery."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from float32_tolerances import network_atol
from gui_fixtures import isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import CLASSES, load_models, wait_idle, write_image_tree
from kdx_engine.data import load_image, to_batch
from kdx_engine.embeddings import pca_2d
from kdx_engine.models import PENULTIMATE


def _computed(qtbot, window, model_files, tmp_path, per_class=3):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(write_image_tree(tmp_path / "images", per_class=per_class))])
    wait_idle(qtbot, window)
    view = window.metrics.show_tab("embeddings")
    view.outputs.set_source("gallery")
    assert view.controls.run_button.isEnabled()
    view.controls.run_button.click()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: len(view.scatters) == 3, timeout=30000)
    return view


def _click_point(qtbot, view, role, row):
    """A real left click on the point's position in the plot's viewport."""
    plot = view.plots[role]
    plot.window().show()
    qtbot.waitExposed(plot)
    qtbot.wait(50)  # the plots lay out and range themselves
    x, y = view.projections[role][row]
    scene = plot.getPlotItem().vb.mapViewToScene(QPointF(float(x), float(y)))
    pos = plot.mapFromScene(scene)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_plots_show_pca_of_each_models_penultimate_features(window, qtbot, model_files, tmp_path):
    view = _computed(qtbot, window, model_files, tmp_path)
    session, outputs = window.session, view.outputs.outputs
    assert outputs.n == len(session.images) == 12
    item = session.images[4]
    student = session.models["student"]
    expected = student.backend.forward(to_batch([item.image], student.info.preprocessing), [PENULTIMATE])
    features = expected.activations[PENULTIMATE][0].double().numpy()  # one image; the view ran batches
    np.testing.assert_allclose(outputs.features["student"][4], features, rtol=0, atol=network_atol(features))
    teacher_pca = pca_2d(outputs.features["teacher"]).coordinates
    np.testing.assert_allclose(view.projections["teacher"], teacher_pca, atol=1e-9)
    x, y = view.scatters["teacher"].getData()
    np.testing.assert_allclose(np.column_stack([x, y]), teacher_pca, atol=1e-6)
    rows = view.table.rows()
    assert rows[0][0] == "all classes" and rows[0][1] == "12"
    assert [r[0] for r in rows[1:5]] == list(CLASSES)
    assert rows[0][2].count("[") == 1  # k-NN accuracy with its interval
    view.colour_box.setCurrentIndex(view.colour_box.findData("agreement"))
    same = outputs.logits["teacher"].argmax(1) == outputs.logits["student"].argmax(1)
    assert view.point_colours("teacher", "agreement") == ["#2e7d32" if s else "#c62828" for s in same]


def test_selection_round_trips_between_plot_and_gallery(window, qtbot, model_files, tmp_path):
    view = _computed(qtbot, window, model_files, tmp_path)
    session, gallery = window.session, window.gallery
    target = 7 if session.current != 7 else 8
    _click_point(qtbot, view, "student", target)
    qtbot.waitUntil(lambda: session.current == target, timeout=5000)
    assert gallery.proxy.mapToSource(gallery.list.currentIndex()).row() == target  # the gallery follows
    for role, ring in view.rings.items():  # the clicked image is ringed in every plot
        x, y = ring.getData()
        np.testing.assert_allclose([x[0], y[0]], view.projections[role][target], atol=1e-6)
    # and back: choosing an image in the gallery rings its point
    other = 2
    gallery.list.setCurrentIndex(gallery.proxy.index(_gallery_row(gallery, other), 0))
    qtbot.waitUntil(lambda: session.current == other, timeout=5000)
    assert view.highlighted == other
    x, y = view.rings["teacher"].getData()
    np.testing.assert_allclose([x[0], y[0]], view.projections["teacher"][other], atol=1e-6)


def _gallery_row(gallery, index):
    for row in range(gallery.proxy.rowCount()):
        if gallery.proxy.mapToSource(gallery.proxy.index(row, 0)).row() == index:
            return row
    raise AssertionError(f"image {index} not shown")


def test_a_dataset_point_not_in_the_gallery_is_added_and_selected(window, qtbot, model_files, tmp_path):
    load_models(qtbot, window, model_files)
    folder = write_image_tree(tmp_path / "dataset", per_class=4, seed=3)
    window.session.set_dataset_folder(str(folder))
    view = window.metrics.show_tab("embeddings")
    assert view.outputs.source == "dataset"
    view.outputs.run()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: len(view.scatters) == 3, timeout=30000)
    assert len(window.session.images) == 0
    view.select_row(5)
    wait_idle(qtbot, window)
    session = window.session
    assert len(session.images) == 1 and session.current == 0
    assert str(session.current_image.image.path) == view.outputs.outputs.paths[5]
    assert view.highlighted == 5
    assert np.array_equal(load_image(view.outputs.outputs.paths[5]).rgb, session.current_image.image.rgb)


def test_another_model_drops_the_embeddings_another_cam_layer_does_not(window, qtbot, model_files, tmp_path):
    view = _computed(qtbot, window, model_files, tmp_path)
    student = window.session.models["student"]
    other_layer = next(layer.name for layer in student.layers if layer.is_spatial and layer.name != student.target_layer)
    window.session.set_target_layer("student", other_layer)  # the CAM layer: the features stay
    assert view.outputs.outputs is not None and len(view.scatters) == 3
    window.slots["base"].load(model_files["teacher"])
    wait_idle(qtbot, window)
    assert view.outputs.outputs is None and view.scatters == {} and view.table.rows() == []


def test_projection_runs_as_a_job_that_can_be_cancelled(window, qtbot, model_files, tmp_path):
    from kdx_engine.embeddings import available_projections

    view = _computed(qtbot, window, model_files, tmp_path)
    if "tsne" not in available_projections():
        pytest.skip("PCA only here (scikit-learn not installed): nothing long to cancel")
    pca = {role: coords.copy() for role, coords in view.projections.items()}
    view.set_projection("tsne")
    job = view.projection_job
    assert job is not None and job.cancellable
    job.cancel()
    wait_idle(qtbot, window)
    assert view.note.text() == "⚠ projection: cancelled"
    assert all(np.array_equal(view.projections[r], pca[r]) for r in pca)  # the PCA plots stay
    view.project()
    wait_idle(qtbot, window)
    assert view.note.text().startswith("t-SNE (perplexity")
    assert not np.allclose(view.projections["teacher"], pca["teacher"])
