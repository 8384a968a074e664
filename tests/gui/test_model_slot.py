"""Model slots: drop or open a model file, see what it is, pick its target layer; bad files and untrusted
pickles never replace the model already there; another class count replaces the pair only after one
confirmation; an mdistiller file fills two slots; a preprocessing unlike the Teacher's is pointed out."""
from pathlib import Path

import torch
from PySide6.QtWidgets import QFileDialog

import kdx_gui.docks.models.model_slot as model_slot
from kdx_engine.models import Preprocessing, write_sidecar
from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from dnd import drop_files
from gui_helpers import CLASSES, load_models, save_resnet8, wait_idle


def test_dropping_a_model_file_on_a_slot_shows_what_it_is(window, qtbot, model_files):
    slot = window.slots["teacher"]
    entered, dropped = drop_files(slot, [model_files["teacher"]])
    assert entered and dropped
    wait_idle(qtbot, window)

    model = window.session.models["teacher"]
    assert model is not None and model.info.path == model_files["teacher"]
    assert slot.values["file"].text() == "teacher.pth"
    assert slot.values["format"].text() == "state_dict (pytorch)"
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


def test_a_model_with_other_classes_is_refused(window, qtbot, model_files, monkeypatch):
    asked = []
    monkeypatch.setattr(model_slot, "ask_to_replace", lambda *args: asked.append(args) or False)
    window.slots["teacher"].load(model_files["teacher"])
    window.slots["student"].load(model_files["three_classes"])
    wait_idle(qtbot, window)
    assert window.session.models["student"] is None
    assert window.session.models["teacher"].info.path == model_files["teacher"]
    assert "Teacher, Student and Base must agree" in window.slots["student"].status.text()
    assert "not loaded" in window.slots["student"].status.text()
    assert len(asked) == 1


def test_a_teacher_with_other_classes_replaces_the_pair_after_one_confirmation(window, qtbot, model_files,
                                                                               monkeypatch):
    load_models(qtbot, window, model_files)
    asked = []
    monkeypatch.setattr(model_slot, "ask_to_replace", lambda *args: asked.append(args[1:]) or True)
    window.slots["teacher"].load(model_files["three_classes"])
    wait_idle(qtbot, window)
    assert asked == [("Teacher", 3, ["Student", "Base"], 4)]
    assert window.session.models["teacher"].info.path == model_files["three_classes"]
    assert window.session.models["student"] is None and window.session.models["base"] is None
    assert window.slots["teacher"].values["classes"].text().startswith("3:")


def test_the_replace_question_names_the_models_removed_and_defaults_to_no(window, monkeypatch):
    calls = []
    monkeypatch.setattr(model_slot.QMessageBox, "question",
                        lambda parent, title, text, buttons, default: calls.append((text, default)) or default)
    assert model_slot.ask_to_replace(window, "Teacher", 10, ["Student", "Base"], 4) is False
    text, default = calls[0]
    assert text == ("Replace the loaded models with this 10-class Teacher? The Student and Base (4 classes) "
                    "will be removed.")
    assert default == model_slot.QMessageBox.StandardButton.No


def save_two_model_checkpoint(path):
    """An mdistiller checkpoint: a student and a teacher resnet8 (4 classes) under one file's prefixes."""
    student = torch.load(save_resnet8(path.with_name("s.pth"), 11, sidecar=False), weights_only=True)
    teacher = torch.load(save_resnet8(path.with_name("t.pth"), 12, sidecar=False), weights_only=True)
    state = {**{f"module.student.{k}": v for k, v in student.items()},
             **{f"module.teacher.{k}": v for k, v in teacher.items()}}
    torch.save({"model": state, "epoch": 240}, path)
    write_sidecar(path, Preprocessing(input_size=32, resize=None, class_names=CLASSES, source="sidecar"))
    return str(path), student, teacher


def test_a_two_model_checkpoint_fills_the_student_and_teacher_slots(window, qtbot, tmp_path, monkeypatch):
    path, student, teacher = save_two_model_checkpoint(tmp_path / "mdistiller.pth")
    asked = []
    monkeypatch.setattr(model_slot, "ask_two_models", lambda parent, name, roles: asked.append((name, roles)) or True)
    entered, dropped = drop_files(window.slots["student"], [path])
    assert entered and dropped
    wait_idle(qtbot, window)
    assert asked == [("mdistiller.pth", ("student", "teacher"))]
    for role, weights in (("student", student), ("teacher", teacher)):
        model = window.session.models[role]
        assert model is not None and model.info.path == path
        assert window.slots[role].load_options == {"which": role}
        assert torch.equal(model.backend.module.state_dict()["conv1.weight"], weights["conv1.weight"])
        assert window.slots[role].values["classes"].text() == "4: circle, square, triangle, star"
    assert not torch.equal(student["conv1.weight"], teacher["conv1.weight"])
    assert window.session.models["base"] is None


def test_declining_a_two_model_checkpoint_loads_the_slots_own_model(window, qtbot, tmp_path, monkeypatch):
    path, _student, teacher = save_two_model_checkpoint(tmp_path / "mdistiller.pth")
    monkeypatch.setattr(model_slot, "ask_two_models", lambda parent, name, roles: False)
    window.slots["teacher"].load(path)
    wait_idle(qtbot, window)
    model = window.session.models["teacher"]
    assert torch.equal(model.backend.module.state_dict()["conv1.weight"], teacher["conv1.weight"])
    assert window.session.models["student"] is None


def test_a_slot_says_when_it_preprocesses_differently_from_the_teacher(window, qtbot, tmp_path):
    teacher = save_resnet8(tmp_path / "t.pth", 1)
    student = save_resnet8(tmp_path / "s.pth", 2)
    write_sidecar(student, Preprocessing(input_size=32, resize=36, mean=(0.5, 0.5, 0.5), class_names=CLASSES,
                                         architecture="resnet8", source="sidecar"))
    window.slots["student"].load(str(student))
    wait_idle(qtbot, window)
    assert window.slots["student"].warning.isHidden()  # no Teacher yet
    window.slots["teacher"].load(str(teacher))
    wait_idle(qtbot, window)
    text = window.slots["student"].warning.text()
    assert "preprocesses differently from the Teacher: resize 36, crop 32; mean 0.5, 0.5, 0.5 vs resize to 32×32; " \
           "mean 0.485, 0.456, 0.406" in text
    assert not window.slots["student"].warning.isHidden()
    assert window.slots["teacher"].warning.isHidden()
    window.slots["teacher"].clear()
    assert window.slots["student"].warning.isHidden()


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


def test_the_two_models_question_names_the_file_and_its_models(window, monkeypatch):
    calls = []
    monkeypatch.setattr(model_slot.QMessageBox, "question",
                        lambda parent, title, text, buttons, default: calls.append(text) or default)
    assert model_slot.ask_two_models(window, "ckpt.pth", ("student", "teacher")) is True
    assert "ckpt.pth holds two models (student and teacher" in calls[0]
    assert "student into the Student slot and its teacher into the Teacher slot" in calls[0]
