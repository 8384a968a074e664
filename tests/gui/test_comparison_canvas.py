"""The comparison canvas: one panel per map, computed by the engine in a job; linked zoom and pan; a
crosshair reading every panel; controls that re-run or only redraw; reasons instead of blank panels."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF

from PySide6.QtWidgets import QFileDialog

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle, write_image_tree
from kdx_engine.cams import cam_method, resolve_targets
from kdx_engine.data import to_batch
from kdx_engine.comparison import Comparison, ComparisonSettings, Panel, image_grid


@pytest.fixture()
def analysed(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    return window


def engine_map(model, image, method="gradcam", rule="predicted", class_index=None):
    x = to_batch([image], model.info.preprocessing)
    targets = resolve_targets(rule, model.backend.logits(x), class_index=class_index)
    return cam_method(method)(model.backend, layer=model.target_layer)(x, targets, rule)


def test_panels_show_the_engines_maps_and_say_why_others_are_missing(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files, roles=("teacher",))
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    canvas, session = window.canvas, window.session
    item = session.current_image
    teacher = session.models["teacher"]

    expected = engine_map(teacher, item.image).maps[0].numpy()
    np.testing.assert_allclose(canvas.panels["teacher"].values, expected, rtol=1e-5, atol=1e-7)
    assert canvas.panels["teacher"].image.image is not None
    np.testing.assert_array_equal(canvas.panels["input"].values, item.image.rgb)  # the image's own pixels
    assert canvas.panels["student"].values is None
    assert canvas.panels["student"].message_text.startswith("no Student model loaded")
    assert canvas.panels["base"].message_text.startswith("no Base model loaded")
    assert canvas.panels["difference"].message_text == "needs the Student map"
    assert canvas.panels["distilled"].message_text.startswith("needs a Student")
    assert canvas.panels["distilled"].message.isVisible()

    load_models(qtbot, window, model_files, roles=("student",))
    diff = canvas.panels["difference"].values
    t_norm = engine_map(teacher, item.image).normalised()[0].numpy()
    s_norm = engine_map(session.models["student"], item.image).normalised()[0].numpy()
    np.testing.assert_allclose(diff, t_norm - s_norm, atol=1e-5)
    assert canvas.panels["difference"].message_text == ""


def test_a_blank_map_shows_the_engines_reason(window, qtbot, image_tree):
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    item = window.session.current_image
    frame = item.image.rgb
    panels = {"input": Panel("input", "Input", "", frame, kind="image"),
              "teacher": Panel("teacher", "Teacher", "gradcam", np.zeros(frame.shape[:2]),
                               note="all-zero map: the weighted activations are negative everywhere")}
    window.session.set_comparison(Comparison(item.image, None, (), image_grid(*frame.shape[:2]), frame, None, panels,
                                             {}, ComparisonSettings(), image_id=item.id))
    assert window.canvas.panels["teacher"].note_text.startswith("⚠ all-zero map")
    assert window.canvas.panels["teacher"].values is not None


def test_zooming_or_panning_one_panel_moves_all(analysed, qtbot):
    analysed.show()
    qtbot.waitExposed(analysed)
    views = analysed.canvas.views
    sizes = {(round(v.width()), round(v.height())) for v in views.values()}
    assert len(sizes) == 1, sizes  # equal panels, so linked ranges are equal ranges
    before = views["input"].viewRange()
    views["student"].scaleBy((0.5, 0.5))
    zoomed = views["student"].viewRange()
    assert zoomed != before
    for key, view in views.items():
        np.testing.assert_allclose(view.viewRange(), zoomed, rtol=1e-6, atol=1e-6, err_msg=key)
    views["residual"].translateBy(x=3, y=-2)
    moved = views["residual"].viewRange()
    np.testing.assert_allclose(moved[0], np.add(zoomed[0], 3))
    for key, view in views.items():
        np.testing.assert_allclose(view.viewRange(), moved, rtol=1e-6, atol=1e-6, err_msg=key)


def test_the_crosshair_reads_the_value_under_the_cursor_in_every_panel(analysed, qtbot):
    analysed.show()
    qtbot.waitExposed(analysed)
    canvas = analysed.canvas
    canvas.reset_zoom()
    qtbot.wait(50)
    view = canvas.views["teacher"]
    scene_pos = view.mapViewToScene(QPointF(10.5, 20.5))
    canvas.scene().sigMouseMoved.emit(scene_pos)

    readouts = canvas.readouts()
    for key in ("teacher", "student", "base"):
        assert readouts[key] == f"value {canvas.panels[key].values[20, 10]:.3g}"
    assert readouts["difference"] == f"value {canvas.panels['difference'].values[20, 10]:+.3g}"
    r, g, b = canvas.panels["input"].values[20, 10]
    assert readouts["input"] == f"RGB {r}, {g}, {b}"
    for panel in canvas.panels.values():
        assert panel.vline.value() == pytest.approx(10.5) and panel.hline.value() == pytest.approx(20.5)
        assert panel.vline.isVisible()


def test_display_controls_redraw_without_running_the_engine(analysed):
    controls, canvas, session = analysed.controls, analysed.canvas, analysed.session
    comparison = session.comparison
    before = canvas.panels["teacher"].image.image.copy()
    controls.colormap.setCurrentText("gray")
    assert session.settings.colormap == "gray"
    assert analysed.jobs.is_idle() and session.comparison is comparison
    grey = canvas.panels["teacher"].image.image
    assert not np.array_equal(before, grey)

    controls.opacity.setValue(100)
    assert session.settings.opacity == 1.0
    shown = canvas.panels["teacher"].image.image
    assert np.all(shown[..., 0] == shown[..., 1])  # pure gray colormap at full opacity

    controls.threshold.setValue(90)
    frame = canvas.panels["input"].image.image  # the input as drawn (a 32 px image upscaled like the maps)
    unchanged = np.all(canvas.panels["teacher"].image.image == frame, axis=2).mean()
    assert 0.85 <= unchanged <= 0.95
    assert analysed.settings.colormap() == "gray" and analysed.settings.opacity() == 1.0


def test_shared_scale_puts_the_models_maps_on_one_scale(analysed):
    from kdx_engine.figures import panel_scales

    session = analysed.session
    session.update_settings(shared_scale=False)
    per_panel = panel_scales(session.comparison.panels, shared=False)
    analysed.controls.scale.setCurrentIndex(analysed.controls.scale.findData(True))
    assert session.settings.shared_scale
    shared = panel_scales(session.comparison.panels, shared=True)
    top = max(session.comparison.panels[k].values.max() for k in ("teacher", "student", "base"))
    assert shared["teacher"].high == shared["student"].high == pytest.approx(top)
    assert per_panel["teacher"].high == pytest.approx(session.comparison.panels["teacher"].values.max())
    assert analysed.canvas.colour_bar.levels() == pytest.approx((0.0, top))


def test_method_and_target_rule_rerun_the_engine(analysed, qtbot):
    controls, session = analysed.controls, analysed.session
    controls.method.setCurrentIndex(controls.method.findData("gradcam++"))
    wait_idle(qtbot, analysed)
    teacher = session.models["teacher"]
    item = session.current_image
    assert session.comparison.panels["teacher"].subtitle.startswith("gradcam++ @ layer3")
    np.testing.assert_allclose(analysed.canvas.panels["teacher"].values,
                               engine_map(teacher, item.image, "gradcam++").maps[0].numpy(), rtol=1e-5, atol=1e-7)

    controls.rule.setCurrentIndex(controls.rule.findData("class"))
    controls.target_class.setCurrentIndex(2)
    wait_idle(qtbot, analysed)
    assert session.settings.target_rule == "class" and session.settings.class_index == 2
    assert "target triangle (class)" in session.comparison.panels["student"].subtitle
    np.testing.assert_allclose(analysed.canvas.panels["teacher"].values,
                               engine_map(teacher, item.image, "gradcam++", "class", 2).maps[0].numpy(),
                               rtol=1e-5, atol=1e-7)


def test_unicam_panels_use_the_reference_set_and_variant(analysed, qtbot, tmp_path, monkeypatch):
    controls, session, canvas = analysed.controls, analysed.session, analysed.canvas
    assert "reference set" in canvas.panels["distilled"].message_text  # 8 images < n − 1 = 15
    controls.reference_n.setValue(6)
    wait_idle(qtbot, analysed)
    for key in ("distilled", "residual"):
        panel = session.comparison.panels[key]
        assert panel.values is not None and panel.values.shape == (32, 32), panel.message
        assert "label-free" in panel.subtitle and "ref gallery, n=6" in panel.subtitle  # the default
    assert canvas.panels["distilled"].title.text == "Distilled (S|B)"
    label_free = canvas.panels["distilled"].values.copy()

    controls.variant.setCurrentText("label-guided")
    wait_idle(qtbot, analysed)
    assert "label-guided" in session.comparison.panels["distilled"].subtitle
    assert not np.allclose(canvas.panels["distilled"].values, label_free)

    reference = write_image_tree(tmp_path / "reference", per_class=2, seed=9)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(reference))
    controls.reference.activated.emit(controls.reference.findData("__choose__"))
    wait_idle(qtbot, analysed)
    assert session.settings.reference_folder == str(reference)
    assert controls.reference.currentText() == "reference"
    assert "ref reference, n=6" in session.comparison.panels["distilled"].subtitle
    assert session.comparison.panels["distilled"].values is not None

    analysed.slots["base"].clear_button.click()
    wait_idle(qtbot, analysed)
    assert canvas.panels["distilled"].title.text == "Distilled (S|T)"
    assert canvas.panels["residual"].title.text == "Residual (T|S)"
    assert session.comparison.panels["residual"].values is not None
