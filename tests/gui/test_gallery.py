"""The gallery: drop files and folders, paste from the clipboard, predictions and T–S badges, filters,
sort by T–S map correlation, keyboard navigation."""
import dataclasses
import math

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from dnd import drop_files
from gui_helpers import load_models, wait_idle
from kdx_gui.gallery.gallery_view import AGREE_ROLE, CORRELATION_ROLE, WRONG_ROLE


def shown_names(window):
    names = {item.id: item.name for item in window.session.images}
    return [names[i] for i in window.gallery.visible_ids()]


def test_dropping_folders_adds_their_images_recursively_and_reports_bad_files(window, qtbot, image_tree):
    nested = image_tree / "circle" / "deeper"
    nested.mkdir()
    (nested / "img_9.png").write_bytes((image_tree / "circle" / "img_0.png").read_bytes())
    bad = image_tree.parent / "notes.png"
    bad.write_text("not an image")

    entered, dropped = drop_files(window.gallery, [image_tree, bad])
    assert entered and dropped
    wait_idle(qtbot, window)

    assert len(window.session.images) == 9
    assert window.gallery.model.rowCount() == 9
    assert "img_9.png" in [item.name for item in window.session.images]
    assert not window.gallery.message.isHidden()  # shown below the thumbnails (the window itself is not shown)
    assert "1 file(s) skipped: notes.png" in window.gallery.message.text()
    assert window.session.current == 0


def test_pasting_an_image_from_the_clipboard_adds_it(window, qtbot):
    image = QImage(20, 12, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.red)
    QGuiApplication.clipboard().setImage(image)

    window.paste_action.trigger()
    wait_idle(qtbot, window)

    assert len(window.session.images) == 1
    pasted = window.session.images[0]
    assert pasted.name == "pasted-1.png" and pasted.source is None
    assert pasted.image.rgb.shape == (12, 20, 3)
    assert tuple(pasted.image.rgb[0, 0]) == (255, 0, 0)


def test_thumbnails_show_each_models_prediction_and_an_agreement_badge(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)

    session, model = window.session, window.gallery.model
    assert len(session.predictions) == 8
    names = session.class_names()
    for row, item in enumerate(session.images):
        prediction = session.predictions[item.id]
        text = model.item(row).text()
        label = session.label_of(item)
        assert label == names.index(item.label_hints[0])
        teacher = names[prediction.classes["teacher"]]
        assert f"T {teacher}" in text and "S " in text and "B " in text
        agree = prediction.classes["teacher"] == prediction.classes["student"]
        assert model.item(row).data(AGREE_ROLE) is agree
        wrong = any(k != label for k in prediction.classes.values())
        assert model.item(row).data(WRONG_ROLE) is wrong
        assert math.isclose(model.item(row).data(CORRELATION_ROLE), prediction.correlation)
        assert not model.item(row).icon().isNull()


def test_filters_keep_only_disagreeing_or_misclassified_images(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    session, gallery = window.session, window.gallery
    # untrained models get most images wrong: give each image a known verdict so every filter has
    # images to keep and images to drop
    predictions = {}
    for k, item in enumerate(session.images):
        label = session.label_of(item)
        other = (label + 1) % len(session.class_names())
        classes = {"teacher": label, "student": label if k % 2 == 0 else other, "base": label if k < 4 else other}
        predictions[item.id] = dataclasses.replace(session.predictions[item.id], classes=classes)
    session.set_predictions(predictions)
    names = [item.name for item in session.images]

    gallery.filter_box.setCurrentIndex(gallery.filter_box.findData("disagree"))
    assert shown_names(window) == [names[k] for k in (1, 3, 5, 7)]
    assert gallery.count_label.text() == "4 of 8 images"
    gallery.filter_box.setCurrentIndex(gallery.filter_box.findData("misclassified"))
    assert shown_names(window) == [names[k] for k in (1, 3, 4, 5, 6, 7)]
    assert gallery.count_label.text() == "6 of 8 images"
    gallery.filter_box.setCurrentIndex(gallery.filter_box.findData("all"))
    assert shown_names(window) == names
    assert gallery.count_label.text() == "8 images"


def test_sorting_by_map_correlation(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files, roles=("teacher", "student"))
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    session, gallery = window.session, window.gallery
    correlation = {i.id: session.predictions[i.id].correlation for i in session.images}
    assert all(np.isfinite(list(correlation.values())))

    gallery.sort_box.setCurrentIndex(gallery.sort_box.findData("correlation-up"))
    ids = gallery.visible_ids()
    assert [correlation[i] for i in ids] == sorted(correlation.values())
    gallery.sort_box.setCurrentIndex(gallery.sort_box.findData("correlation-down"))
    assert [correlation[i] for i in gallery.visible_ids()] == sorted(correlation.values(), reverse=True)
    gallery.sort_box.setCurrentIndex(gallery.sort_box.findData("order"))
    assert gallery.visible_ids() == [i.id for i in session.images]


def test_arrow_keys_move_the_selection_and_the_current_image(window, qtbot, image_tree):
    window.show()
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    view = window.gallery.list
    view.setFocus()
    assert window.session.current == 0
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert window.session.current == 1
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert window.session.current == 2
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert window.session.current == 1
    assert view.currentIndex().row() == 1
