"""Usable from 1024×700 (PRODUCT §5): panels reflow, docks tabify, control rows wrap, nothing clipped;
labels that say which scale a colour bar shows, ordinals, the image notes, VAM titles and bars."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtGui import QFont, QFontMetrics

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle
from kdx_gui.canvas.comparison_canvas import MIN_VIEW
from kdx_gui.widgets.layout import choose_grid
from kdx_gui.widgets.wording import ordinal


@pytest.fixture()
def analysed(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    return window


def _settle(qtbot, win, size):
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)
    qtbot.wait(200)  # reflow, label fitting (deferred) and a second layout pass


def _assert_nothing_clipped(canvas):
    for key, panel in canvas.panels.items():
        view = panel.view.sceneBoundingRect()
        assert view.width() >= 100 and view.height() >= 100, (key, view)
        title = panel.title
        font = QFont()
        font.setPointSizeF(10)
        font.setBold(True)
        advance = QFontMetrics(font).horizontalAdvance(title.plain_text())
        assert advance <= title.rect().width(), (key, title.plain_text(), advance, title.rect().width())
        for label in panel.labels:
            assert label.text_height() <= label.fixed_height + 0.5, (key, label.plain_text())
            assert label.text_width() <= label.rect().width() + 0.5, (key, label.plain_text())
    for label in (canvas.status, canvas.scale_label, canvas.position_label):
        assert label.text_height() <= label.fixed_height + 0.5, label.plain_text()


@pytest.mark.parametrize("size", [(1024, 700), (1600, 1000)])
def test_the_canvas_stays_usable_on_small_and_large_windows(analysed, qtbot, size):
    _settle(qtbot, analysed, size)
    assert analysed.width() <= size[0] + 1 and analysed.height() <= size[1] + 1  # no minimum forces it wider
    _assert_nothing_clipped(analysed.canvas)
    controls = analysed.controls
    for label in controls.labels:
        assert label.isVisible()
        assert label.fontMetrics().horizontalAdvance(label.text()) <= label.width(), label.text()
        assert label.width() > 0 and controls.rect().contains(label.mapTo(controls, label.rect().bottomRight()))
    if size[0] < 1300:  # tabified on the right beside Metrics, and thinner minimum widths
        assert analysed.dockWidgetArea(analysed.models_dock) == analysed.dockWidgetArea(analysed.metrics)
        assert analysed.models_dock.minimumWidth() <= 200 and analysed.metrics.minimumWidth() <= 240
    else:
        assert analysed.dockWidgetArea(analysed.models_dock) != analysed.dockWidgetArea(analysed.metrics)
        assert analysed.canvas.columns == 4


@pytest.mark.parametrize("size", [(1024, 700), (1600, 1000)])
def test_the_model_slots_headers_fit_their_titles_and_buttons(analysed, qtbot, size):
    from PySide6.QtWidgets import QLabel

    _settle(qtbot, analysed, size)
    analysed.models_dock.raise_()  # the current tab where the docks are tabified
    qtbot.wait(100)
    for role, slot in analysed.slots.items():
        assert slot.isVisible(), role
        heading = next(label for label in slot.findChildren(QLabel) if f">{slot.title}<" in label.text())
        assert heading.fontMetrics().horizontalAdvance(slot.title) <= heading.width(), (role, heading.width())
        heading_box = heading.geometry()
        boxes = [heading_box]
        for button in (slot.open_button, slot.preprocessing_button, slot.clear_button):
            box = button.geometry()
            assert slot.rect().contains(box), (role, button.text(), box, slot.rect())
            assert button.fontMetrics().horizontalAdvance(button.text()) <= box.width(), (role, button.text())
            assert not any(box.intersects(other) for other in boxes), (role, button.text())
            boxes.append(box)


def test_linked_zoom_still_sees_equal_panels_after_a_reflow(analysed, qtbot):
    _settle(qtbot, analysed, (1024, 700))
    _settle(qtbot, analysed, (1400, 900))
    sizes = {(round(v.width()), round(v.height())) for v in analysed.canvas.views.values()}
    assert len(sizes) == 1, sizes


def test_choose_grid_prefers_big_views_and_scrolls_below_the_minimum():
    assert choose_grid(1000, 600, 8, overhead=70)[0] == 4
    columns, cell_h = choose_grid(400, 900, 8, overhead=70)
    assert columns in (2, 3) and cell_h - 70 >= MIN_VIEW
    columns, cell_h = choose_grid(300, 200, 8, overhead=70)  # too small: scroll, views stay ≥ MIN_VIEW
    assert cell_h - 70 >= MIN_VIEW and (300 / columns) - 6 >= MIN_VIEW


@pytest.mark.parametrize("n, text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                     (13, "13th"), (21, "21st"), (61, "61st"), (62, "62nd"), (63, "63rd"),
                                     (111, "111th")])
def test_ordinals(n, text):
    assert ordinal(n) == text


def test_threshold_and_scale_labels_say_what_they_mean(analysed, qtbot):
    session = analysed.session
    session.update_settings(threshold=61.0, shared_scale=False)
    assert analysed.controls.threshold_label.text() == "61st pct"
    canvas = analysed.canvas
    assert "61st percentile" in canvas.scale_label.plain_text()
    assert "bar = Teacher" in canvas.scale_label.plain_text()
    scales = {key: p.range_text for key, p in canvas.panels.items() if p.values is not None and p.kind == "map"}
    assert scales and all(text.startswith("scale ") for text in scales.values())
    assert canvas.panels["teacher"].readout.plain_text() == scales["teacher"]  # shown where the cursor is not
    teacher = session.comparison.panels["teacher"].values
    low = float(np.nanmin(teacher))
    assert f"{low:.3g}" in scales["teacher"]
    ticks = canvas.colour_bar.axis._tickLevels[0]
    assert 2 <= len(ticks) <= 3  # a few labels that cannot run into each other


def test_the_images_conversion_notes_reach_the_window(analysed, qtbot):
    session = analysed.session
    notes = ("converted from CMYK to RGB", "the Student preprocesses differently from the Teacher")
    session.set_comparison(dataclasses.replace(session.comparison, notes=notes))
    pane = analysed.canvas_pane
    assert not pane.notes.isHidden()
    assert "CMYK" in pane.notes.text() and "preprocesses differently" in pane.notes.text()
    session.set_comparison(dataclasses.replace(session.comparison, notes=()))
    assert pane.notes.isHidden()


def test_vam_titles_break_between_words_and_the_grid_has_a_colour_bar(qtbot):
    from kdx_gui.docks.metrics.matrix_grid import MatrixGrid

    grid = MatrixGrid(columns=4, write_values=False, bar_label="attention weight A (0…1)")
    qtbot.addWidget(grid)
    grid.resize(300, 400)
    grid.show()
    qtbot.waitExposed(grid)
    items = [(f"stage{i}.block0.vam_attention", np.random.default_rng(i).random((4, 4)), "4×4") for i in range(4)]
    grid.set_matrices(items)
    qtbot.wait(50)
    assert grid.titles == [title for title, _, _ in items]
    assert grid.shown_columns == 2  # 300 px: two columns of ≥ 110 px, not four squeezed ones
    assert grid.bar is not None
    for label in grid.title_labels:
        # each line of the wrapped title ends at a dot or underscore, not inside a word
        layout = label.item.document().firstBlock().layout()
        text = label.plain_text()
        for i in range(layout.lineCount() - 1):
            line = layout.lineAt(i)
            end = text[line.textStart() + line.textLength() - 1]
            assert end in "._\u200b", (text, end)


def test_a_layout_saved_on_a_narrow_window_comes_apart_on_a_wide_one(qtbot):
    from kdx_gui.main_window import MainWindow

    narrow = MainWindow()
    qtbot.addWidget(narrow)
    _settle(qtbot, narrow, (1024, 700))
    assert narrow.dockWidgetArea(narrow.models_dock) == narrow.dockWidgetArea(narrow.metrics)
    narrow.shutdown()  # saves geometry, dock state and that the layout was the narrow one
    narrow.close()

    wide = MainWindow()
    qtbot.addWidget(wide)
    _settle(qtbot, wide, (1600, 1000))
    assert wide.dockWidgetArea(wide.models_dock) != wide.dockWidgetArea(wide.metrics)
    assert wide.models_dock.isVisible() and wide.metrics.isVisible()
    wide.shutdown()
