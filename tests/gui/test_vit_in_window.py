"""A DeiT in the window: Grad-CAM on its automatic token layer, and attention rollout offered in the
method list (drawn for the DeiT, refused with the engine's reason in a CNN's panel)."""
import numpy as np
import pytest

from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from gui_helpers import wait_idle
from kdx_engine.bundled import DEMO_MODELS, DEMO_SAMPLES

timm = pytest.importorskip("timm")


def test_rollout_is_offered_drawn_for_a_deit_and_refused_for_a_cnn(window, qtbot, tmp_path):
    import torch

    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=48).eval()
    torch.save(deit.state_dict(), tmp_path / "deit.pth")
    window.slots["teacher"].load(str(DEMO_MODELS / "teacher.pth"))
    window.slots["student"].load(str(tmp_path / "deit.pth"))
    wait_idle(qtbot, window)
    window.gallery.add_paths([str(DEMO_SAMPLES / "circle" / "00000.png")])
    wait_idle(qtbot, window)
    session, canvas = window.session, window.canvas
    assert session.models["student"].info.architecture.startswith("timm:deit_tiny")
    assert canvas.panels["student"].values.shape == (48, 48)  # Grad-CAM on the tokens as a 3×3 image
    assert "norm1" in session.comparison.panels["student"].subtitle

    controls = window.controls
    index = controls.method.findData("rollout")
    assert index >= 0 and "ViT" in controls.method.itemText(index)
    controls.method.setCurrentIndex(index)
    wait_idle(qtbot, window)
    student = canvas.panels["student"].values
    assert student is not None and student.shape == (48, 48) and np.isfinite(student).all()
    assert session.comparison.panels["student"].subtitle.startswith("rollout")
    assert canvas.panels["teacher"].values is None
    assert "attention rollout needs a ViT/DeiT" in canvas.panels["teacher"].message_text
