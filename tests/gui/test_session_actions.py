"""File ▸ New and Close all empty the session (asking first when something is loaded); gallery images
are removed with Delete or the context menu; the demo over a loaded session asks to replace it."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

import kdx_gui.main_window as main_window
from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import CLASSES, load_models, wait_idle, write_image_tree
from kdx_gui.demo import Demo


@pytest.fixture()
def loaded(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    return window


def _answer(monkeypatch, button):
    asked = []

    def question(*args, **kwargs):
        asked.append(args[2] if len(args) > 2 else "")
        return button

    monkeypatch.setattr(main_window.QMessageBox, "question", question)
    return asked


@pytest.mark.parametrize("action", ["new_session", "close_all"])
def test_new_and_close_all_empty_the_session_after_asking(loaded, qtbot, monkeypatch, action):
    session = loaded.session
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert getattr(loaded, action)() is False
    assert len(asked) == 1 and session.loaded_models() and session.images  # cancelled: all kept
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    loaded.project_path = "/tmp/some.kdx"
    assert getattr(loaded, action)() is True
    wait_idle(qtbot, loaded)
    assert session.is_empty() and session.comparison is None and session.predictions == {}
    assert session.current_image is None and loaded.gallery.model.rowCount() == 0
    assert session.dataset_folder is None
    assert (loaded.project_path is None) == (action == "new_session")
    assert all(p.values is None for p in loaded.canvas.panels.values())


def test_new_on_an_empty_session_does_not_ask(window, monkeypatch):
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert window.new_session() is True and asked == []


def test_the_menu_has_new_and_close_all(window):
    texts = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "&New" in texts and "&Close all" in texts


def test_delete_removes_the_selected_gallery_images(loaded, qtbot):
    session, gallery = loaded.session, loaded.gallery
    count = len(session.images)
    gallery.list.setFocus()
    gallery.list.selectionModel().clearSelection()
    for row in (1, 2):
        gallery.list.selectionModel().select(gallery.proxy.index(row, 0),
                                             gallery.list.selectionModel().SelectionFlag.Select)
    removed = set(gallery.selected_ids())
    assert len(removed) == 2
    gallery.remove_action.trigger()  # what Delete (its shortcut) and the context menu do
    assert len(session.images) == count - 2 and not removed & {item.id for item in session.images}
    assert gallery.model.rowCount() == count - 2
    assert gallery.remove_action.shortcut().matches(Qt.Key.Key_Delete)
    menu = gallery.context_menu()
    assert gallery.remove_action in menu.actions()
    loaded.show()
    qtbot.waitExposed(loaded)
    gallery.list.setFocus()
    gallery.list.selectionModel().select(gallery.proxy.index(0, 0), gallery.list.selectionModel().SelectionFlag.Select)
    qtbot.keyClick(gallery.list, Qt.Key.Key_Delete)  # the key itself
    assert len(session.images) == count - 3
    wait_idle(qtbot, loaded)
    assert session.comparison is not None and session.comparison.image_id == session.current_image.id


def test_removing_the_current_image_makes_the_next_one_current(loaded, qtbot):
    session = loaded.session
    session.set_current(1)
    wait_idle(qtbot, loaded)
    old, following = session.images[1], session.images[2]
    assert session.remove_images([old.id]) == 1
    assert session.current_image is following
    assert session.comparison is None or session.comparison.image_id != old.id
    session.remove_images([item.id for item in session.images])
    assert session.images == [] and session.current == -1


def _three_class_demo(tmp_path, model_files):
    samples = write_image_tree(tmp_path / "samples", per_class=1, classes=CLASSES[:3])
    path = model_files["three_classes"]
    return Demo({"teacher": path, "student": path, "base": path}, [str(samples)])


def test_the_demo_over_a_loaded_session_asks_and_replaces_it(loaded, qtbot, tmp_path, model_files, monkeypatch):
    demo = _three_class_demo(tmp_path, model_files)
    monkeypatch.setattr(main_window, "find_demo", lambda: demo)
    session = loaded.session
    before = [item.id for item in session.images]
    _answer(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert loaded.open_demo() is False
    wait_idle(qtbot, loaded)
    assert [item.id for item in session.images] == before  # nothing happened

    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    assert loaded.open_demo() is True
    wait_idle(qtbot, loaded)
    assert len(session.images) == 3 and not set(before) & {item.id for item in session.images}
    assert set(session.loaded_models()) == {"teacher", "student", "base"}
    assert all(m.class_names == tuple(CLASSES[:3]) for m in session.loaded_models().values())


def test_the_unicam_reference_follows_the_loaded_dataset_but_not_a_chosen_folder(qtbot):
    from kdx_gui.state.session import Session

    session = Session()
    session.set_dataset_folder("/data/demo")
    session.update_settings(reference_folder="/data/demo")
    session.set_dataset_folder("/data/mine")
    assert session.settings.reference_folder == "/data/mine"
    session.set_dataset_folder(None)
    assert session.settings.reference_folder is None  # back to the gallery
    session.set_dataset_folder("/data/mine")
    session.update_settings(reference_folder="/data/hand-picked")
    session.set_dataset_folder("/data/other")
    assert session.settings.reference_folder == "/data/hand-picked"


def test_a_model_still_loading_when_new_is_chosen_never_lands(window, qtbot, model_files, monkeypatch):
    asked = []
    monkeypatch.setattr(main_window.QMessageBox, "question", lambda *args, **kwargs: asked.append(args) or
                        QMessageBox.StandardButton.Yes)
    window.slots["teacher"].load(model_files["teacher"])
    assert window.new_session()
    wait_idle(qtbot, window)
    assert window.session.models["teacher"] is None
    assert window.session.is_empty()
