"""Figure export: the PDF, SVG and PNG hold what the user asked for (pages, titles as text, tiles,
pixel size), the data folder holds the maps, metrics and manifest, and nothing is replaced or left
half-written."""
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from kdx_engine.comparison import ComparisonSettings, UniCamCache, compare_image
from kdx_engine.comparison.export import data_folder, export_comparisons, strict_json
from kdx_engine.figures.figure_panel import FigureOptions, figure_size
from kdx_engine.unicam import ReferenceSet

from test_comparison import _cifar_model, _noise_images

COLUMNS = ("input", "teacher", "student", "base", "distilled", "residual", "difference")


@pytest.fixture(scope="module")
def comparisons():
    models = {role: _cifar_model(seed) for seed, role in enumerate(("teacher", "student", "base"))}
    reference = ReferenceSet.from_images(_noise_images(7, seed=1), [0, 1, 2, 0, 1, 2, 0], n=8)
    cache = UniCamCache()
    return [compare_image(models, image, label=i % 3, reference=reference, unicam_cache=cache,
                          settings=ComparisonSettings(colormap="viridis"))
            for i, image in enumerate(_noise_images(3, seed=7))]


def strict_load(path):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_pdf_has_one_page_real_text_and_one_image_per_tile(comparisons, tmp_path):
    from pypdf import PdfReader

    out = tmp_path / "figure.pdf"
    export_comparisons(comparisons, out, FigureOptions(format="pdf"))
    reader = PdfReader(out)
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for title in ("Input", "Teacher", "Student", "Base", "Distilled (S|B)", "Residual (B|S)", "T − S", "img0.png",
                  "img2.png", "KL(T‖S)", "r(T,S)"):
        assert title in text, title
    images = reader.pages[0].images
    assert len(images) == 3 * 7 + 2  # every tile, plus the map and the T − S colour bars
    width, height = (float(v) for v in reader.pages[0].mediabox[2:])
    assert (width / 72, height / 72) == pytest.approx(figure_size(3, FigureOptions(format="pdf")), abs=0.01)


def test_svg_keeps_text_as_text_and_embeds_each_tile(comparisons, tmp_path):
    out = tmp_path / "figure.svg"
    export_comparisons(comparisons[:2], out, FigureOptions(columns=("input", "teacher", "difference"), format="svg"))
    svg = out.read_text()
    assert len(re.findall(r"<image ", svg)) == 2 * 3 + 2
    texts = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    for title in ("Input", "Teacher", "T − S", "img0.png", "img1.png"):
        assert title in texts, title
    assert "Student" not in texts.replace("S higher", "")


def test_png_size_follows_the_dpi_and_the_tiles_show_the_windows_pixels(comparisons, tmp_path):
    from kdx_engine.figures import panel_scales, render_panel

    out = tmp_path / "figure.png"
    options = FigureOptions(columns=("teacher",), metrics=(), format="png", dpi=100)
    export_comparisons(comparisons[:1], out, options)
    width, height = figure_size(1, options)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[:2] == (round(height * 100), round(width * 100))
    comparison = comparisons[0]
    panel = comparison.panels["teacher"]
    tile = render_panel(comparison.frame, panel.values, "map", panel_scales(comparison.panels, False)["teacher"],
                        "viridis", 0.5, 0.0)
    colours = {tuple(c) for c in tile.reshape(-1, 3)[::7]}
    found = {tuple(c) for c in image.reshape(-1, 3)}
    assert len(colours & found) / len(colours) > 0.9  # nearest-neighbour tiles carry the rendered colours


def test_the_data_folder_holds_maps_metrics_and_manifest(comparisons, tmp_path):
    out = tmp_path / "fig.png"
    result = export_comparisons(comparisons, out, FigureOptions(dpi=50), provenance={"seed": 3})
    folder = data_folder(out)
    assert result.folder == folder
    maps = sorted(p.name for p in (folder / "maps").iterdir())
    assert len(maps) == 3 * 6 and "img0__distilled.npy" in maps
    np.testing.assert_allclose(np.load(folder / "maps" / "img1__teacher.npy"),
                               comparisons[1].panels["teacher"].values, rtol=1e-6)
    rows = strict_load(folder / "metrics.json")["rows"]
    assert [r["image"] for r in rows] == ["img0", "img1", "img2"]
    assert rows[0]["pearson"] == pytest.approx(comparisons[0].map_metrics["pearson"])
    assert rows[0]["energy_teacher"] is None  # no mask: null, never NaN
    csv_lines = (folder / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("image,file,sha256,true_class")
    manifest = strict_load(folder / "manifest.json")
    assert manifest["n_images"] == 3 and manifest["seed"] == 3
    assert manifest["models"]["teacher"]["layer"] == "layer3"
    assert manifest["settings"]["unicam_variant"] == "label-free"
    assert manifest["images"][0]["reference"]["n"] == 8
    assert manifest["images"][0]["panels"]["teacher"]["target_rule"] == "predicted"
    assert "after resizing" in manifest["maps"]["normalisation"]
    assert "torch" in manifest["versions"]


def test_nothing_is_replaced_without_overwrite(comparisons, tmp_path):
    out = tmp_path / "fig.pdf"
    export_comparisons(comparisons[:1], out, FigureOptions(format="pdf"))
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="fig.pdf"):
        export_comparisons(comparisons, out, FigureOptions(format="pdf"))
    assert out.read_bytes() == before
    export_comparisons(comparisons, out, FigureOptions(format="pdf"), overwrite=True)
    assert out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig_data"]  # no temporaries left


def test_an_unwritable_location_fails_first_and_leaves_nothing(comparisons, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_comparisons(comparisons, blocker / "sub" / "fig.png", FigureOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_strict_json_writes_null_for_undefined_numbers():
    text = strict_json({"a": math.nan, "b": [1.0, math.inf], "c": np.float64("nan")})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": None}
