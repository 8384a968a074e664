"""The bundled demo: found from resources/models (zoo.json or file names) and resources/samples; opened
with the first sample analysed; an empty, usable window that says so when it is not built."""
import json

import kdx_gui.main_window as main_window
from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import save_resnet8, wait_idle, write_image_tree
from kdx_gui.demo import Demo, find_demo


def test_without_built_models_the_demo_says_how_to_build_it(tmp_path):
    (tmp_path / "models").mkdir()
    message = find_demo(tmp_path)
    assert isinstance(message, str) and "demo is not built" in message and "kdx zoo build" in message


def test_roles_come_from_zoo_json_or_file_names(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("teacher_resnet.pth", "base_student.pth", "kd_student.pth", "vam_student.pth", "kdexplainer.pth"):
        (models / name).write_bytes(b"x")
    write_image_tree(tmp_path / "samples", per_class=1)
    demo = find_demo(tmp_path)
    assert demo.models == {"teacher": str(models / "teacher_resnet.pth"), "base": str(models / "base_student.pth"),
                           "student": str(models / "kd_student.pth")}
    assert set(demo.checkpoints) == {"vam_student.pth", "kdexplainer.pth"}
    assert demo.samples == [str(tmp_path / "samples")] and demo.sample_count == 4
    assert demo.dataset is None  # 4 images: too few for dataset metrics
    write_image_tree(tmp_path / "dataset", per_class=8)
    assert find_demo(tmp_path).dataset == str(tmp_path / "dataset")

    (models / "zoo.json").write_text(json.dumps({"models": [
        {"name": "T", "role": "teacher", "file": "kd_student.pth"},
        {"name": "S", "role": "student", "file": "teacher_resnet.pth"},
        {"name": "V", "role": "vam-student", "file": "vam_student.pth"}]}))
    demo = find_demo(tmp_path)
    assert demo.models == {"teacher": str(models / "kd_student.pth"), "student": str(models / "teacher_resnet.pth")}
    assert demo.checkpoints == {"vam_student.pth": str(models / "vam_student.pth")}


def test_opening_the_demo_analyses_the_first_sample(window, qtbot, tmp_path, monkeypatch):
    models = {role: str(save_resnet8(tmp_path / f"{role}.pth", seed)) for seed, role in
              enumerate(("teacher", "student", "base"))}
    samples = write_image_tree(tmp_path / "samples", per_class=1)
    monkeypatch.setattr(main_window, "find_demo", lambda: Demo(models, [str(samples)]))
    assert window.open_demo()
    wait_idle(qtbot, window)
    assert {r: m.info.path for r, m in window.session.loaded_models().items()} == models
    assert len(window.session.images) == 4 and window.session.current == 0
    comparison = window.session.comparison
    assert comparison.image_id == window.session.images[0].id
    assert all(comparison.panels[r].values is not None for r in ("teacher", "student", "base", "difference"))


def test_files_dropped_on_the_window_open_as_on_the_command_line(window, qtbot, model_files, image_tree):
    from dnd import drop_files

    entered, dropped = drop_files(window, [model_files["teacher"], model_files["student"], str(image_tree)])
    assert entered and dropped
    wait_idle(qtbot, window)
    assert window.session.models["teacher"].info.path == model_files["teacher"]
    assert window.session.models["student"].info.path == model_files["student"]
    assert window.session.models["base"] is None
    assert len(window.session.images) == 8 and window.session.comparison is not None


def test_an_unbuilt_demo_leaves_an_empty_usable_window(window, qtbot, monkeypatch, model_files, image_tree):
    monkeypatch.setattr(main_window, "find_demo", lambda: "the demo is not built (resources/models is empty)")
    assert not window.open_demo()
    assert "the demo is not built" in window.gallery.message.text()
    assert not window.gallery.message.isHidden()
    assert window.canvas.panels["input"].message_text.startswith("no image: drop images")
    assert window.session.loaded_models() == {} and window.session.images == []

    window.open_paths([model_files["teacher"], str(image_tree)])  # the window still opens what it is given
    wait_idle(qtbot, window)
    assert window.session.models["teacher"].info.path == model_files["teacher"]
    assert window.canvas.panels["teacher"].values is not None
