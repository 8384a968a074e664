"""Figures of small images and long names: a 32 px image is drawn with square pixels (its maps stay on
its own grid), a long file name breaks at separators and camelCase, same-named images are told apart,
the legend stays on the page, and ``kdx export`` keeps the command line's order and picks the columns
the given models and options can compute."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import backend_for, make_cifar
from kdx_engine.comparison import ComparisonModel, ComparisonSettings, compare_image
from kdx_engine.comparison.export import export_comparisons
from kdx_engine.data import LoadedImage
from kdx_engine.figures import panel_scales, render_panel
from kdx_engine.figures.figure_panel import LEFT, NAME_W, FigureOptions, _text_width_measure, build_figure
from kdx_engine.figures.image_captions import distinct_captions
from kdx_engine.figures.name_wrapping import name_pieces, wrap_name
from kdx_engine.figures.pixel_scaling import SMALL_IMAGE, nearest_factor, nearest_upscaled
from kdx_engine.models.preprocessing import Preprocessing

FOUR = ("input", "teacher", "student", "difference")


def _model(seed, preprocessing=None):
    backend = backend_for(make_cifar("resnet8", num_classes=3, seed=seed), 3, input_size=32)
    if preprocessing is not None:
        backend.info = dataclasses.replace(backend.info, preprocessing=preprocessing)
    return ComparisonModel(backend, "layer3")


def _image(name, size=32, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return LoadedImage(Path(name), rgb, (), None, f"sha-{name}-{size}")


@pytest.fixture(scope="module")
def pair():
    return {"teacher": _model(1), "student": _model(2)}


@pytest.fixture(scope="module")
def cropping_pair():
    """The Teacher sees a 32 px centre crop of a 36 px resize: its map is undefined at the borders."""
    return {"teacher": _model(1, Preprocessing(input_size=32, resize=36, source="test")), "student": _model(2)}


# --- drawing small images ----------------------------------------------------------------------------


@pytest.mark.parametrize("side, factor", [(32, 16), (64, 8), (96, 6), (127, 5), (SMALL_IMAGE, 1), (500, 1)])
def test_images_under_128_px_are_drawn_upscaled_by_an_integer_factor(side, factor):
    assert nearest_factor((side, side // 2, 3)) == factor
    pixels = np.arange(side * 3 * 2).reshape(side, 3, 2)
    drawn = nearest_upscaled(pixels)
    assert drawn.shape == (side * factor, 3 * factor, 2)
    np.testing.assert_array_equal(drawn[::factor, ::factor], pixels)  # each pixel a factor × factor square
    np.testing.assert_array_equal(drawn[factor - 1::factor, factor - 1::factor], pixels)


def test_a_32px_image_is_embedded_in_the_pdf_as_square_pixels_and_its_maps_stay_32px(pair, tmp_path):
    from pypdf import PdfReader

    comparison = compare_image(pair, _image("cifar.png"), settings=ComparisonSettings(colormap="viridis"))
    out = tmp_path / "small.pdf"
    for dpi in (72, 300):  # the embedded drawing does not depend on the dpi: viewers show square pixels
        export_comparisons([comparison], out, FigureOptions(columns=FOUR, format="pdf", dpi=dpi), overwrite=True)
        # matplotlib stores an unsampled image bottom row first, under a flipping transform
        images = [np.asarray(image.image.convert("RGB"))[::-1] for image in PdfReader(out).pages[0].images]
        tiles = [image for image in images if image.shape[0] > 40]  # not the colour bars
        scales = panel_scales(comparison.panels, False)
        teacher = render_panel(comparison.frame, comparison.panels["teacher"].values, "map", scales["teacher"],
                               "viridis", 0.5, 0.0)
        assert [tile.shape for tile in tiles] == [(512, 512, 3)] * 4
        for expected in (comparison.frame, teacher):
            assert any(np.array_equal(tile, nearest_upscaled(expected)) for tile in tiles)
    saved = np.load(tmp_path / "small_data" / "maps" / "cifar__teacher.npy")
    assert saved.shape == (32, 32)  # the maps are on the image's own grid; only the drawing is upscaled
    np.testing.assert_array_equal(saved, comparison.panels["teacher"].values.astype(np.float32))


def test_an_image_of_128_px_or_more_is_not_upscaled(pair, tmp_path):
    from pypdf import PdfReader

    comparison = compare_image(pair, _image("photo.png", size=160))
    out = tmp_path / "large.pdf"
    export_comparisons([comparison], out, FigureOptions(columns=("input",), metrics=(), format="pdf", dpi=100))
    tile = PdfReader(out).pages[0].images[0].image
    assert tile.size == (145, 145)  # resampled at the figure's dpi (1.45 in), as before


# --- file names ----------------------------------------------------------------------------------------


def test_a_long_file_name_breaks_after_separators_and_before_camel_case():
    name = "a_very_long_file_name-from.someDataset_2024_final_v3.png"
    assert name_pieces(name) == ["a_", "very_", "long_", "file_", "name-", "from.", "some", "Dataset_", "2024_",
                                 "final_", "v", "3.png"]
    lines = wrap_name(name, 14)
    assert lines == ["a_very_long_", "file_name-", "from.some", "Dataset_2024_", "final_v3.png"]
    assert "".join(lines) == name and all(len(line) <= 14 for line in lines)


def test_a_name_without_break_points_is_cut_only_where_a_line_is_full():
    assert wrap_name("IMG20240101123456789012.JPG", 14) == ["IMG20240101123", "456789012.JPG"]
    assert wrap_name("x" * 30 + ".png", 14) == ["x" * 14, "x" * 14, "xx.png"]
    assert wrap_name("n01440764_10026.JPEG", 14) == ["n01440764_", "10026.JPEG"]
    assert wrap_name("img0.png", 14) == ["img0.png"] and wrap_name("", 14) == [""]


def test_too_many_lines_keep_the_start_and_the_end():
    assert wrap_name("a_very_long_file_name-from.someDataset_2024_final_v3.png", 14, max_lines=3) == \
        ["a_very_long_", "…", "final_v3.png"]


def test_the_rows_file_name_stays_left_of_the_first_tile(pair):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    long_name = "a_very_long_file_name-from.someDataset_2024_final_v3_with_moreWords.png"
    comparison = compare_image(pair, _image(long_name))
    figure = build_figure([comparison], FigureOptions(columns=FOUR, format="pdf"))
    renderer = FigureCanvasAgg(figure).get_renderer()
    label = next(t for t in figure.texts if "true:" in t.get_text())
    lines = label.get_text().split("\n")
    measure = _text_width_measure(7.0)
    assert lines[0] == "a_very_long_" and lines[-2].endswith(".png") and all(measure(l) <= NAME_W for l in lines)
    assert label.get_window_extent(renderer).x1 / figure.dpi < LEFT


def test_same_named_images_are_told_apart_by_their_folders():
    assert distinct_captions([("img.png", "/d/a/img.png"), ("img.png", "/d/b/img.png"), ("x.png", "/d/a/x.png")]) \
        == ["a/img.png", "b/img.png", "x.png"]
    assert distinct_captions([("img.png", "/p/a/cat/img.png"), ("img.png", "/q/b/cat/img.png"),
                              ("img.png", "/q/c/dog/img.png")]) == ["a/cat/img.png", "b/cat/img.png", "dog/img.png"]
    assert distinct_captions([("img.png", "/a/img.png"), ("img.png", "/a/img.png"), ("pasted-1.png", None)]) == \
        ["a/img.png", "a/img.png (2)", "pasted-1.png"]


# --- the legend ----------------------------------------------------------------------------------------


def _extent(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    box = figure.get_tightbbox(FigureCanvasAgg(figure).get_renderer())
    return box.x0, box.y0, box.x1, box.y1


@pytest.mark.parametrize("columns, metrics", [(FOUR, ("kl", "pearson", "top_iou", "energy")),
                                              (FOUR[:3], ("kl", "pearson")),
                                              (("input", "teacher", "student", "base", "difference", "student",
                                                "teacher"), ("kl",)),
                                              (("teacher", "difference"), ()), (("difference",), ())])
def test_the_legend_and_the_undefined_pixels_note_stay_on_the_page(cropping_pair, columns, metrics):
    comparison = compare_image(cropping_pair, _image("crop.png"))
    assert np.isnan(comparison.panels["teacher"].values).any()
    figure = build_figure([comparison], FigureOptions(columns=columns, metrics=metrics, format="pdf"))
    width, height = figure.get_size_inches()
    x0, y0, x1, y1 = _extent(figure)
    assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height, (x0, y0, x1, y1, width, height)


def test_in_a_four_column_pdf_the_legend_ends_inside_the_page(cropping_pair, tmp_path):
    from pypdf import PdfReader

    comparison = compare_image(cropping_pair, _image("crop.png"))
    out = tmp_path / "four.pdf"
    export_comparisons([comparison], out, FigureOptions(columns=FOUR, format="pdf"))
    page = PdfReader(out).pages[0]
    page_width = float(page.mediabox[2])
    placed = []
    page.extract_text(visitor_text=lambda text, cm, tm, font, size: placed.append((text, tm, cm)))
    note = [(tm[4] * cm[0] + cm[4], text) for text, tm, cm in placed if "outside the model" in text]
    assert note, "the undefined-pixels note is in the PDF"
    x, text = note[0]
    assert x + _text_width_measure(6.0)(text.strip()) * 72 <= page_width
    for label in ("+1 (T higher)", "high"):
        assert any(label in text for text, _, _ in placed)


# --- kdx export: row order and default columns -----------------------------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from kdx_engine.models.registry import get_architecture

    folder = tmp_path_factory.mktemp("cli")
    paths = []
    for name, seed in (("t.pth", 1), ("s.pth", 2)):
        torch.manual_seed(seed)
        torch.save(get_architecture("resnet8").build(3).state_dict(), folder / name)
        paths.append(str(folder / name))
    rng = np.random.default_rng(0)
    images = []
    for name in ("zebra.png", "sub/apple.png", "mango.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)
        images.append(str(folder / name))
    return paths, images


def test_figure_rows_follow_the_command_lines_order(cli_files, tmp_path):
    from kdx_engine.cli import main

    (teacher, student), images = cli_files
    assert main(["export", "--teacher", teacher, "--student", student, *images, "--out", str(tmp_path / "f.svg"),
                 "--columns", "input,teacher", "--metrics", "none"]) == 0
    manifest = json.loads((tmp_path / "f_data" / "manifest.json").read_text())
    assert [Path(image["file"]).name for image in manifest["images"]] == ["zebra.png", "apple.png", "mango.png"]


def test_export_as_the_readme_shows_it_leaves_out_the_columns_it_cannot_compute(cli_files, tmp_path, capsys):
    from kdx_engine.cli import main

    (teacher, student), images = cli_files
    out = tmp_path / "fig.pdf"
    assert main(["export", "--teacher", teacher, "--student", student, *images[:1], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: columns base, distilled, residual left out: base needs --base MODEL; distilled and residual " \
           "need --reference DIR" in printed
    manifest = json.loads((tmp_path / "fig_data" / "manifest.json").read_text())
    assert manifest["figure"]["columns"] == ["input", "teacher", "student", "difference"]
    assert main(["export", "--teacher", teacher, "--student", student, "--base", teacher, *images[:1],
                 "--out", str(tmp_path / "b.pdf"), "--metrics", "none"]) == 0
    assert "note: columns distilled, residual left out: distilled and residual need --reference DIR" in \
        capsys.readouterr().out
    assert json.loads((tmp_path / "b_data" / "manifest.json").read_text())["figure"]["columns"] == \
        ["input", "teacher", "student", "base", "difference"]
