"""Model slots: drop or open a model file, see what it is, pick its target layer; bad files and untrusted
pickles never replace the model already there."""
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

import kdx_gui.docks.models.model_slot as model_slot
from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from dnd import drop_files
from gui_helpers import wait_idle


def test_dropping_a_model_file_on_a_slot_shows_what_it_is(window, qtbot, model_files):
    slot = window.slots["teacher"]
    entered, dropped = drop_files(slot, [model_files["teacher"]])
    assert entered and dropped
    wait_idle(qtbot, window)

    model = window.session.models["teacher"]
    assert model is not None and model.info.path == model_files["teacher"]
    assert slot.values["file"].text() == "teacher.pth"
    assert slot.values["format"].text() == "torch_pickle (pytorch)"
    assert slot.values["architecture"].text() == "resnet8"
    assert slot.values["classes"].text() == "4: circle, square, triangle, star"
    assert slot.values["input"].text().startswith("32×32")
    assert slot.values["parameters"].text() == f"{model.info.num_parameters:,}"
    assert slot.current_layer_text() == model.target_layer == "layer3"
    names = [slot.layer_picker.itemData(i) for i in range(slot.layer_picker.count())]
    assert "layer1" in names and "layer3" in names
    assert slot.status.text().startswith("loaded")


def test_the_target_layer_picker_is_editable(window, qtbot, model_files):
    slot = window.slots["student"]
    slot.load(model_files["student"])
    wait_idle(qtbot, window)

    slot.layer_picker.setCurrentIndex(slot.layer_picker.findData("layer2"))
    slot.layer_picker.activated.emit(slot.layer_picker.currentIndex())
    assert window.session.models["student"].target_layer == "layer2"

    slot.layer_picker.setEditText("layer1.0")
    slot.layer_picker.lineEdit().editingFinished.emit()
    assert window.session.models["student"].target_layer == "layer1.0"

    slot.layer_picker.setEditText("no_such_layer")
    slot.layer_picker.lineEdit().editingFinished.emit()
    assert window.session.models["student"].target_layer == "layer1.0"
    assert "no layer named 'no_such_layer'" in slot.status.text()


def test_a_bad_file_shows_a_message_and_keeps_the_previous_model(window, qtbot, model_files):
    slot = window.slots["teacher"]
    slot.load(model_files["teacher"])
    wait_idle(qtbot, window)
    before = window.session.models["teacher"]

    drop_files(slot, [model_files["corrupt"]])
    wait_idle(qtbot, window)

    assert window.session.models["teacher"] is before
    assert "corrupt.pth" in slot.status.text() and "kept teacher.pth" in slot.status.text()
    assert slot.values["file"].text() == "teacher.pth"


def test_a_model_with_other_classes_is_refused(window, qtbot, model_files):
    window.slots["teacher"].load(model_files["teacher"])
    window.slots["student"].load(model_files["three_classes"])
    wait_idle(qtbot, window)
    assert window.session.models["student"] is None
    assert "Teacher, Student and Base must agree" in window.slots["student"].status.text()


def test_an_untrusted_pickle_needs_explicit_consent(window, qtbot, model_files, monkeypatch):
    asked = []
    monkeypatch.setattr(model_slot, "ask_to_trust", lambda parent, role, message: asked.append(message) or False)
    slot = window.slots["base"]
    slot.load(model_files["pickled"])
    wait_idle(qtbot, window)
    assert len(asked) == 1 and "pickled.pt" in asked[0]
    assert window.session.models["base"] is None
    assert "not trusted" in slot.status.text()

    monkeypatch.setattr(model_slot, "ask_to_trust", lambda parent, role, message: True)
    slot.load(model_files["pickled"])
    wait_idle(qtbot, window)
    model = window.session.models["base"]
    assert model is not None and model.trusted
    assert "explicitly trusted" in slot.status.text()


def test_the_consent_dialog_defaults_to_no(window, monkeypatch):
    calls = []

    def question(parent, title, text, buttons, default):
        calls.append((title, text, default))
        return default

    monkeypatch.setattr(model_slot.QMessageBox, "question", question)
    assert model_slot.ask_to_trust(window, "Base", "x.pt: holds pickled Python objects") is False
    title, text, default = calls[0]
    assert "Trust this Base model file" in title and "I trust this file" in text
    assert default == model_slot.QMessageBox.StandardButton.No


def test_file_open_menu_loads_into_the_chosen_slot(window, qtbot, model_files, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (model_files["base"], ""))
    window.open_actions["base"].trigger()
    wait_idle(qtbot, window)
    assert window.session.models["base"].info.path == model_files["base"]
    assert window.settings.last_folder("models") == str(Path(model_files["base"]).parent)


def test_clearing_a_slot_empties_it(window, qtbot, model_files):
    slot = window.slots["teacher"]
    slot.load(model_files["teacher"])
    wait_idle(qtbot, window)
    slot.clear_button.click()
    assert window.session.models["teacher"] is None
    assert "drop a model file here" in slot.values["file"].text()
