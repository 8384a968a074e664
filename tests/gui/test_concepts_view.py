"""The Concepts tab: a job with progress and Cancel, the entropy maps with concept cells in two colours,
the dataset table (N_fg, N_bg, λ_ratio with intervals) and the trajectory table."""
import numpy as np
from PIL import Image

from gui_fixtures import isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle, write_image_tree
from kdx_engine.concepts.entropy_map import EntropySettings
from kdx_gui.docks.metrics import concepts_view
from kdx_gui.docks.metrics.concepts_view import BACKGROUND_COLOUR, FOREGROUND_COLOUR, concept_picture


def _images_with_masks(root, per_class=1):
    write_image_tree(root, per_class=per_class)
    for path in root.glob("*/*.png"):
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[8:24, 8:24] = 255
        Image.fromarray(mask).save(path.with_name(path.stem + ".mask.png"))
    return root


def _quick(view, steps=2):
    view.steps.setValue(steps)
    view.draws.setValue(2)
    view.grid.setValue(4)


def test_published_defaults_are_shown():
    published = EntropySettings()
    assert (concepts_view.PUBLISHED_STEPS, concepts_view.PUBLISHED_DRAWS, concepts_view.PUBLISHED_GRID) == \
        (published.steps, published.draws, published.grid)


def test_concept_cells_are_tinted_in_two_colours():
    rgb = np.full((8, 8, 3), 128, dtype=np.uint8)
    entropy = np.array([[-3.0, -2.5], [-2.5, -3.0]])
    concepts = np.array([[True, False], [False, True]])
    foreground = np.array([[True, False], [False, False]])
    picture = concept_picture(rgb, entropy, concepts, foreground, (-3.0, -2.0)).astype(float)
    plain = concept_picture(rgb, entropy, np.zeros_like(concepts), foreground, (-3.0, -2.0)).astype(float)

    def towards(colour, pixel):
        return np.linalg.norm(picture[pixel] - colour) < 0.5 * np.linalg.norm(plain[pixel] - colour)

    assert towards(FOREGROUND_COLOUR, (1, 1)) and not towards(BACKGROUND_COLOUR, (1, 1))   # object's concept
    assert towards(BACKGROUND_COLOUR, (6, 6)) and not towards(FOREGROUND_COLOUR, (6, 6))   # background's concept
    np.testing.assert_array_equal(picture[1, 6], plain[1, 6])                              # not a concept
    assert plain[1, 1].sum() > plain[1, 6].sum()  # lower entropy is brighter


def test_run_fills_maps_and_tables(window, qtbot, model_files, tmp_path):
    load_models(qtbot, window, model_files, roles=("student", "base"))
    window.gallery.add_paths([str(_images_with_masks(tmp_path / "images"))])
    wait_idle(qtbot, window)
    view = window.metrics.show_tab("concepts")
    assert view.run_button.isEnabled()
    _quick(view)
    job = view.run()
    assert job is not None and view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: view.result is not None, timeout=120000)
    result = view.result
    assert result.n == len(window.session.images) and result.has_masks
    assert set(view.picture_items) == {"student", "base"}
    texts = [[view.dataset_table.item(r, c).text() for c in range(view.dataset_table.columnCount())]
             for r in range(view.dataset_table.rowCount())]
    assert [row[0].split(" ")[0] for row in texts] == ["N", "N_fg", "N_bg", "λ_ratio"]
    n_fg = result.models["student"].statistics["N_fg"]
    assert texts[1][1].startswith(f"{n_fg.value:.3f}")
    assert "n = " in view.status.text() and "b = 0.2" in view.status.text()
    assert view.trajectory_table.rowCount() == 0  # no checkpoint folder given
    assert not view.cancel_button.isEnabled() and view.run_button.isEnabled()


def test_cancel_keeps_nothing(window, qtbot, model_files, tmp_path):
    load_models(qtbot, window, model_files, roles=("student",))
    window.gallery.add_paths([str(_images_with_masks(tmp_path / "images", per_class=2))])
    wait_idle(qtbot, window)
    view = window.metrics.show_tab("concepts")
    _quick(view, steps=100000)
    view.run()
    qtbot.waitUntil(lambda: view.progress.value() > 0, timeout=60000)
    view.cancel()
    qtbot.waitUntil(lambda: view.job is None, timeout=60000)
    assert view.result is None and "cancelled" in view.status.text()
    assert view.dataset_table.rowCount() == 0 and view.picture_items == {}
    assert view.run_button.isEnabled()


def test_run_is_blocked_without_a_student(window, qtbot):
    view = window.metrics.show_tab("concepts")
    assert not view.run_button.isEnabled() and "Student" in view.status.text()
    assert view.run() is None
