"""The preprocessing dialog of a model slot: shows the values and where they came from, keeps itself open
on a bad value with the engine's message, saves the sidecar on OK and reloads the model; a changed
architecture rebuilds the state_dict, and a reload that fails puts the previous sidecar back."""
import json

import kdx_gui.docks.models.model_slot as model_slot
from kdx_engine.models import read_sidecar
from kdx_engine.models.preprocessing import sidecar_path
from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from gui_helpers import save_resnet8, wait_idle


def loaded_slot(window, qtbot, tmp_path, role="teacher", sidecar=True):
    path = save_resnet8(tmp_path / f"{role}.pth", 1, sidecar=sidecar)
    slot = window.slots[role]
    slot.load(str(path))
    wait_idle(qtbot, window)
    assert window.session.models[role] is not None
    return slot, str(path)


def editing(change):
    """A stand-in for the modal run: apply ``change`` to the dialog, press OK, report as exec would."""
    def run(dialog):
        change(dialog)
        dialog.accept()
        return dialog.result() == dialog.DialogCode.Accepted
    return run


def test_the_dialog_shows_the_values_and_where_they_came_from(window, qtbot, tmp_path):
    slot, path = loaded_slot(window, qtbot, tmp_path)
    assert slot.preprocessing_button.isEnabled()
    dialog = slot.preprocessing_dialog()
    assert "the sidecar teacher.pth.kdx.json" in dialog.source_label.text()
    assert dialog.input_size.value() == 32
    assert dialog.resize_box.value() == 0 and dialog.resize_box.text().startswith("none")
    assert dialog.classes_edit.text() == "circle, square, triangle, star"
    assert dialog.architecture_box.currentText() == "resnet8" and dialog.architecture_box.isEnabled()
    names = [dialog.architecture_box.itemText(i) for i in range(dialog.architecture_box.count())]
    assert "resnet110" in names and "wrn_16_2" in names and names[0] == "resnet8"


def test_a_family_preset_is_named_as_the_source(window, qtbot, tmp_path):
    slot, _ = loaded_slot(window, qtbot, tmp_path, sidecar=False)
    dialog = slot.preprocessing_dialog()
    assert "family's preset" in dialog.source_label.text()
    assert dialog.mean_edit.text() == "0.5071, 0.4865, 0.4409"


def test_a_bad_value_keeps_the_dialog_open_with_the_message(window, qtbot, tmp_path):
    slot, path = loaded_slot(window, qtbot, tmp_path)
    before = sidecar_path(path).read_text()
    dialog = slot.preprocessing_dialog()
    for field, text, message in ((dialog.mean_edit, "0.5, 0.5", "'mean' must be 3 finite numbers"),
                                 (dialog.mean_edit, "a, b, c", "'mean' must be 3 numbers separated by commas"),
                                 (dialog.std_edit, "0.2, 0, 0.2", "'std' must be 3 numbers above zero"),
                                 (dialog.classes_edit, "a, b, c", "3 class names given but the model has 4")):
        original = field.text()
        field.setText(text)
        dialog.accept()
        assert message in dialog.error_label.text()
        assert not dialog.error_label.isHidden()
        assert dialog.result() != dialog.DialogCode.Accepted and not dialog.sidecar_written
        field.setText(original)
    assert sidecar_path(path).read_text() == before


def test_ok_saves_the_sidecar_and_reloads_the_model(window, qtbot, tmp_path, monkeypatch):
    slot, path = loaded_slot(window, qtbot, tmp_path, sidecar=False)
    window.session.set_target_layer("teacher", "layer2")

    def change(dialog):
        dialog.resize_box.setValue(40)
        dialog.mean_edit.setText("0.5, 0.5, 0.5")
        dialog.classes_edit.setText("w, x, y, z")

    monkeypatch.setattr(model_slot, "run_preprocessing_dialog", editing(change))
    slot.preprocessing_button.click()
    wait_idle(qtbot, window)
    saved = json.loads(sidecar_path(path).read_text())
    assert saved["resize"] == 40 and saved["mean"] == [0.5, 0.5, 0.5] and saved["class_names"] == ["w", "x", "y", "z"]
    assert saved["architecture"] == "resnet8"
    model = window.session.models["teacher"]
    pre = model.info.preprocessing
    assert (pre.source, pre.resize, pre.mean, pre.class_names) == ("sidecar", 40, (0.5, 0.5, 0.5), ("w", "x", "y", "z"))
    assert slot.values["input"].text() == "32×32, resize 40 (sidecar)"
    assert slot.values["classes"].text() == "4: w, x, y, z"
    assert model.target_layer == "layer2"  # the chosen layer survives the reload


def test_an_architecture_that_does_not_fit_keeps_the_model_and_the_old_sidecar(window, qtbot, tmp_path,
                                                                               monkeypatch):
    slot, path = loaded_slot(window, qtbot, tmp_path)
    before_text = sidecar_path(path).read_text()
    before = window.session.models["teacher"]

    def change(dialog):
        dialog.architecture_box.setCurrentIndex(dialog.architecture_box.findData("resnet20"))
        assert dialog.architecture_changed()

    monkeypatch.setattr(model_slot, "run_preprocessing_dialog", editing(change))
    slot.edit_preprocessing()
    wait_idle(qtbot, window)
    assert window.session.models["teacher"] is before
    assert "resnet20" in slot.status.text() and "sidecar was put back" in slot.status.text()
    assert sidecar_path(path).read_text() == before_text
    assert read_sidecar(path).architecture == "resnet8"


def test_a_new_sidecar_is_removed_again_when_the_reload_fails(window, qtbot, tmp_path, monkeypatch):
    slot, path = loaded_slot(window, qtbot, tmp_path, sidecar=False)
    monkeypatch.setattr(model_slot, "run_preprocessing_dialog", editing(
        lambda dialog: dialog.architecture_box.setCurrentIndex(dialog.architecture_box.findData("vgg8"))))
    slot.edit_preprocessing()
    wait_idle(qtbot, window)
    assert not sidecar_path(path).exists()
    assert window.session.models["teacher"].info.preprocessing.source != "sidecar"


def test_cancel_changes_nothing(window, qtbot, tmp_path, monkeypatch):
    slot, path = loaded_slot(window, qtbot, tmp_path)
    before_text = sidecar_path(path).read_text()
    before = window.session.models["teacher"]
    monkeypatch.setattr(model_slot, "run_preprocessing_dialog", lambda dialog: False)
    slot.edit_preprocessing()
    wait_idle(qtbot, window)
    assert window.session.models["teacher"] is before and sidecar_path(path).read_text() == before_text
