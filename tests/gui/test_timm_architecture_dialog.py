"""A timm state_dict in a model slot: the preprocessing dialog names its recognised timm architecture and
interpolation, and any timm model can be typed as ``timm:NAME`` (a name timm does not know keeps the dialog
open with the engine's message)."""
import json

import timm
import torch

import kdx_gui.docks.models.model_slot as model_slot
from kdx_engine.models.preprocessing import sidecar_path
from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from gui_helpers import wait_idle


def loaded_deit(window, qtbot, tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=32)
    path = tmp_path / "student.pth"
    torch.save(model.state_dict(), path)
    slot = window.slots["student"]
    slot.load(str(path))
    wait_idle(qtbot, window)
    assert window.session.models["student"] is not None, slot.status.text()
    return slot, path


def test_a_deit_is_confirmed_as_its_timm_architecture_and_another_timm_name_can_be_typed(window, qtbot, tmp_path,
                                                                                         monkeypatch):
    slot, path = loaded_deit(window, qtbot, tmp_path)
    dialog = slot.preprocessing_dialog()
    assert dialog.architecture_box.currentText() == "timm:deit_tiny_patch16_224"
    assert dialog.interpolation_box.currentText() == "bicubic" and dialog.input_size.value() == 32
    assert dialog.architecture_box.isEditable()
    assert "timm:vit_tiny_patch16_224" in dialog.architecture_box.completer().model().stringList()

    dialog.architecture_box.setEditText("timm:not_a_timm_model")
    dialog.accept()
    assert "'not_a_timm_model' is not a model timm knows" in dialog.error_label.text()
    assert not dialog.sidecar_written

    def change(dialog):
        dialog.architecture_box.setEditText("timm:vit_tiny_patch16_224")  # the same parameters as DeiT-Ti
        assert dialog.architecture_changed()

    def run(dialog):
        change(dialog)
        dialog.accept()
        return dialog.result() == dialog.DialogCode.Accepted

    monkeypatch.setattr(model_slot, "run_preprocessing_dialog", run)
    slot.edit_preprocessing()
    wait_idle(qtbot, window)
    saved = json.loads(sidecar_path(path).read_text())
    assert saved["architecture"] == "timm:vit_tiny_patch16_224" and saved["interpolation"] == "bicubic"
    assert window.session.models["student"].info.architecture == "timm:vit_tiny_patch16_224"
