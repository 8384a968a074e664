"""Settings persist between runs (QSettings) and a .kdx project saves and restores models, images and
view settings; a corrupt or newer project file gives a clear message."""
import json

import pytest

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle
from kdx_gui.main_window import MainWindow
from kdx_gui.state.project import PROJECT_VERSION, ProjectError, load_project


def test_settings_persist_between_windows(qtbot, tmp_path, monkeypatch):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    first.resize(1300, 820)
    first.controls.colormap.setCurrentText("inferno")
    first.controls.opacity.setValue(35)
    first.settings.remember_folder("images", tmp_path)
    geometry = first.saveGeometry()
    first.close()

    restored = []
    original = MainWindow.restoreGeometry
    monkeypatch.setattr(MainWindow, "restoreGeometry",
                        lambda self, data: restored.append(bytes(data)) or original(self, data))
    second = MainWindow()
    qtbot.addWidget(second)
    assert second.session.settings.colormap == "inferno"
    assert second.session.settings.opacity == pytest.approx(0.35)
    assert second.controls.colormap.currentText() == "inferno"
    assert second.controls.opacity.value() == 35
    assert restored == [bytes(geometry)]  # (the offscreen screen is too small to check the size itself)
    assert second.settings.last_folder("images") == str(tmp_path)
    second.close()


def test_a_project_saves_and_restores_models_images_and_view(window, qtbot, model_files, image_tree, tmp_path,
                                                            monkeypatch):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    window.slots["student"].layer_picker.setEditText("layer2")
    window.slots["student"].layer_picker.lineEdit().editingFinished.emit()
    window.session.set_current(3)
    window.session.update_settings(method="layercam", colormap="viridis", threshold=40.0, shared_scale=True,
                                   unicam_variant="label-free", reference_n=6)
    window.session.add_checkpoint(model_files["base"], "extra")
    path = tmp_path / "study.kdx"
    assert window.save_project_to(str(path))
    data = json.loads(path.read_text())
    assert data["format"] == "kdx-project" and data["version"] == PROJECT_VERSION
    wait_idle(qtbot, window)

    other = MainWindow()
    qtbot.addWidget(other)
    other.start_engine()
    assert other.open_project(str(path))
    wait_idle(qtbot, other)
    assert {r: m.info.path for r, m in other.session.loaded_models().items()} == \
        {r: m.info.path for r, m in window.session.loaded_models().items()}
    assert other.session.models["student"].target_layer == "layer2"
    assert [i.source for i in other.session.images] == [i.source for i in window.session.images]
    assert other.session.current == 3
    assert other.session.settings == window.session.settings
    assert other.controls.method.currentData() == "layercam"
    assert other.session.extra_checkpoints == {"extra": model_files["base"]}
    assert other.session.comparison.image_id == other.session.images[3].id
    assert "layercam @ layer2" in other.session.comparison.panels["student"].subtitle
    other.shutdown()


def test_paths_are_stored_relative_to_the_project(tmp_path, model_files):
    from kdx_gui.state.project import Project, save_project

    images = tmp_path / "pics"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    save_project(Project(images=[str(images / "a.png")]), tmp_path / "p.kdx")
    assert json.loads((tmp_path / "p.kdx").read_text())["images"] == ["pics/a.png"]
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "p.kdx").rename(moved / "p.kdx")
    assert load_project(moved / "p.kdx").images == [str(moved / "pics" / "a.png")]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a KDX project (corrupt or not JSON"),
    (json.dumps({"hello": 1}), "not a KDX project (no \"format\""),
    (json.dumps({"format": "kdx-project", "version": PROJECT_VERSION + 1}),
     f"saved by a newer KDX (project version {PROJECT_VERSION + 1})"),
    (json.dumps({"format": "kdx-project", "version": 1, "models": {"wizard": {"path": "x"}}}),
     "damaged project file (unknown model role 'wizard')"),
])
def test_a_bad_project_file_gives_a_clear_message(window, tmp_path, monkeypatch, content, message):
    path = tmp_path / "bad.kdx"
    path.write_text(content)
    with pytest.raises(ProjectError, match="bad.kdx"):
        load_project(path)
    shown = []
    monkeypatch.setattr("kdx_gui.main_window.QMessageBox.warning",
                        lambda parent, title, text: shown.append((title, text)))
    assert not window.open_project(str(path))
    assert shown[0][0] == "Cannot open project" and message in shown[0][1]
    assert window.project_path is None


def test_a_project_with_a_reference_folder_opens_again(window, tmp_path):
    from kdx_gui.state.project import Project, load_project, save_project
    from kdx_gui.state.session import ViewSettings

    (tmp_path / "reference").mkdir()
    view = ViewSettings(reference_folder=str(tmp_path / "reference"), method="layercam")
    path = save_project(Project(view=view), tmp_path / "study.kdx")
    loaded = load_project(path)
    assert loaded.view == view
    assert window.open_project(str(path))
    assert window.session.settings.reference_folder == str(tmp_path / "reference")
