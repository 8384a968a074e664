"""Small images and same-named files in the window: a 32 px image is drawn with square pixels (canvas
and thumbnail) while the readout stays on its own pixel grid; same-named images from different folders
get their folder in the gallery's caption."""
import numpy as np
import pyqtgraph as pg

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import load_models, wait_idle
from kdx_gui.canvas.comparison_canvas import PanelView
from kdx_gui.gallery.gallery_view import make_thumbnail


def test_a_32px_panel_is_drawn_as_square_pixels_on_the_images_own_grid(qtbot):
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    panel = PanelView(widget.ci.addLayout(), "teacher")
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    values = np.random.default_rng(1).random((32, 32))
    panel.show_image(rgb, values, "map")
    drawn = panel.image.image
    assert drawn.shape == (512, 512, 3)
    np.testing.assert_array_equal(drawn[::16, ::16], rgb)
    np.testing.assert_array_equal(drawn[15::16, 15::16], rgb)
    rect = panel.image.mapRectToParent(panel.image.boundingRect())
    assert (rect.width(), rect.height()) == (32, 32)  # placed on the image's pixel grid
    assert panel.value_at(5.5, 7.2) == f"value {values[7, 5]:.3g}"  # the map's own values


def test_a_small_images_thumbnail_shows_square_pixels():
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    thumbnail = make_thumbnail(rgb)
    assert (thumbnail.width(), thumbnail.height()) == (96, 96)
    pixels = np.array([[thumbnail.pixelColor(x, y).getRgb()[:3] for x in range(96)] for y in range(96)])
    np.testing.assert_array_equal(pixels[1::3, 1::3], rgb)
    np.testing.assert_array_equal(pixels[::3, ::3], pixels[2::3, 2::3])


def test_same_named_images_show_their_folder_in_the_gallery(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files, roles=("teacher",))
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    captions = [window.gallery.model.item(row).text().split("\n")[0].split("  ")[0]
                for row in range(window.gallery.model.rowCount())]
    # image_tree holds img_0.png and img_1.png in each class folder
    assert captions == [f"{folder}/img_{k}.png" for folder in ("circle", "square", "star", "triangle") for k in (0, 1)]
    unique = image_tree.parent / "lone.png"
    unique.write_bytes((image_tree / "circle" / "img_0.png").read_bytes())
    window.gallery.add_paths([str(unique)])
    wait_idle(qtbot, window)
    assert window.gallery.model.item(8).text().split("\n")[0].split("  ")[0] == "lone.png"
    canvas = window.canvas  # the 32 px current image is drawn with square pixels
    assert canvas.panels["input"].image.image.shape == (512, 512, 3)
    assert canvas.panels["teacher"].values.shape == (32, 32)
