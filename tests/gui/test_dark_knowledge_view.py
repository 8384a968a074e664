"""Dark knowledge in the window: the Predictions tab softened by a temperature slider (KL(T‖S), KL(T‖B)
and entropies at τ), and the Dark knowledge tab's KL-against-τ curves, similar classes and agreement."""
import math

import numpy as np
import pytest
import torch

from gui_fixtures import isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import CLASSES, load_models, save_resnet8, wait_idle, write_image_tree
from kdx_engine.data import to_batch
from kdx_engine.models import Preprocessing, write_sidecar
from kdx_gui.docks.metrics.prediction_view import TemperatureSlider


def _logits(session, item):
    result = {}
    for role, model in session.loaded_models().items():
        result[role] = model.backend.logits(to_batch([item.image], model.info.preprocessing)).double()[0].numpy()
    return result


def _softmax(z, tau):
    e = np.exp((z - z.max()) / tau)
    return e / e.sum()


def test_slider_is_logarithmic_from_1_to_20(qtbot):
    slider = TemperatureSlider(4.0)
    qtbot.addWidget(slider)
    assert slider.slider.value() == slider.position_of(4.0)
    assert slider.position_of(1.0) == 0 and slider.position_of(20.0) == 1000
    assert slider.position_of(math.sqrt(20.0)) == 500
    slider.slider.setValue(1000)
    assert slider.temperature() == pytest.approx(20.0)
    slider.set_temperature(50.0)
    assert slider.temperature() == 20.0


def test_predictions_soften_live_with_kl_and_entropy_at_tau(window, qtbot, model_files, tmp_path):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(write_image_tree(tmp_path / "images", per_class=1))])
    wait_idle(qtbot, window)
    view, session = window.metrics.predictions, window.session
    assert view.temperature.temperature() == 4.0  # no sidecar τ: the default
    logits = _logits(session, session.current_image)
    for tau in (4.0, 12.0):
        view.set_temperature(tau)
        p = {role: _softmax(z, tau) for role, z in logits.items()}
        order = list(np.argsort(-p["teacher"]))
        np.testing.assert_allclose(view.bars["teacher"].opts["height"][:4], p["teacher"][order], rtol=1e-6)
        kl_ts = float(np.sum(p["teacher"] * np.log(p["teacher"] / p["student"])))
        kl_tb = float(np.sum(p["teacher"] * np.log(p["teacher"] / p["base"])))
        text = view.kl_label.text()
        assert text.startswith(f"KL(T‖S) = {kl_ts:.4f} nats at τ = {tau:.2f}")
        assert f"KL(T‖B) = {kl_tb:.4f}" in text
        entropy_s = float(-np.sum(p["student"] * np.log(p["student"])))
        assert f"S {entropy_s:.3f}" in text
    # hotter is flatter: every bar moves towards 1/K
    view.set_temperature(20.0)
    heights = np.concatenate([bar.opts["height"] for bar in view.bars.values()])
    assert np.all(np.abs(heights - 0.25) < 0.2)


def test_temperature_preset_from_the_students_sidecar(window, qtbot, model_files, tmp_path):
    student = save_resnet8(tmp_path / "kd_student.pth", 2)
    write_sidecar(student, Preprocessing(input_size=32, resize=None, class_names=CLASSES, source="sidecar",
                                         distillation_temperature=2.5))
    window.slots["student"].load(str(student))
    wait_idle(qtbot, window)
    assert window.metrics.predictions.temperature.temperature() == 2.5
    assert window.metrics.dark_knowledge.temperature.temperature() == 2.5


def test_dark_knowledge_tab_curves_similar_classes_and_agreement(window, qtbot, model_files, tmp_path):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(write_image_tree(tmp_path / "images", per_class=3))])
    wait_idle(qtbot, window)
    view = window.metrics.show_tab("dark_knowledge")
    view.outputs.set_source("gallery")
    view.controls.run_button.click()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: view.result is not None, timeout=30000)
    session = window.session
    per_image = [_logits(session, item) for item in session.images]
    logits = {role: np.stack([z[role] for z in per_image]) for role in ("teacher", "student", "base")}
    x, y, low, high = view.curves["student"]
    for tau, mean, lo, hi in zip(x, y, low, high):
        pt, ps = (np.stack([_softmax(z, tau) for z in logits[r]]) for r in ("teacher", "student"))
        kl = np.sum(pt * np.log(pt / ps), axis=1)
        assert mean == pytest.approx(kl.mean(), rel=1e-6)
        assert hi - mean == pytest.approx(1.959964 * kl.std(ddof=1) / math.sqrt(len(kl)), rel=1e-4)
    assert set(view.curves) == {"student", "base"}
    assert 4.0 in list(x)
    rows = view.similar_table.rows()
    assert len(rows) == 2 * 4  # two similar classes per true class
    labels = [session.label_of(item) for item in session.images]
    teacher4 = np.stack([_softmax(z, 4.0) for z in logits["teacher"]])
    members = teacher4[np.array(labels) == 0]
    means = members.mean(axis=0)
    means[0] = -1
    assert rows[0][0].startswith(CLASSES[0]) and rows[0][1] == CLASSES[int(np.argmax(means))]
    assert rows[0][2].startswith(f"{means.max():.3f} [")
    agreement = view.agreement_table.rows()
    same = np.mean(logits["teacher"].argmax(1) == logits["student"].argmax(1))
    assert agreement[0][0] == "Teacher–Student" and agreement[0][1].startswith(f"{same:.3f}")
    view.set_temperature(1.0)
    assert view.similar_table.rows()[0][2] != rows[0][2]  # the table follows τ
