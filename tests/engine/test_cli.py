"""The kdx command line: info and explain, exit codes and one-line errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_colour_dataset
from kdx_engine.cli import main
from kdx_engine.models.registry import get_architecture


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "r8.pth"
    torch.save(get_architecture("resnet8").build(4).state_dict(), path)
    return path


@pytest.fixture()
def image_dir(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "sub" / "b.jpg")
    return folder


def test_info_json_lists_format_architecture_layers(model_file, capsys):
    assert main(["info", str(model_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "state_dict" and data["architecture"] == "resnet8"
    assert data["num_classes"] == 4 and data["input_size"] == 32
    assert data["parameters"] == sum(p.numel() for p in get_architecture("resnet8").build(4).parameters())
    assert data["default_layer"] == "layer3"
    names = [layer["name"] for layer in data["layers"]]
    assert {"layer1", "layer2", "layer3"} <= set(names)
    assert next(l for l in data["layers"] if l["name"] == "layer3")["shape"] == [64, 8, 8]


def test_info_text_names_the_default_layer(model_file, capsys):
    assert main(["info", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "architecture:  resnet8" in out and "default layer: layer3" in out


def test_explain_writes_maps_overlays_and_manifest(model_file, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "--method", "gradcam++", "--model", str(model_file), str(image_dir),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.png", "b.npy", "b.png", "manifest.json"]
    assert np.load(out / "a.npy").shape == (40, 50)  # the image's own pixel grid
    assert np.load(out / "b.npy").shape == (32, 32)
    assert Image.open(out / "a.png").size == (50, 40)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "gradcam++" and manifest["layer"] == "layer3"
    assert manifest["model"]["architecture"] == "resnet8" and len(manifest["model"]["sha256"]) == 64
    assert [i["file"].endswith(n) for i, n in zip(manifest["images"], ["a.png", "b.jpg"])] == [True, True]
    # no silent overwrite
    assert main(["explain", "--model", str(model_file), str(image_dir), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_bad_model_file_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a model")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.pth" in err


def test_bad_image_is_skipped_and_reported(model_file, image_dir, tmp_path, capsys):
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out2"
    assert main(["explain", "--model", str(model_file), str(image_dir), "--out", str(out)]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert (out / "a.npy").exists() and (out / "b.npy").exists()


def test_unknown_method_exits_2(model_file, image_dir, tmp_path, capsys):
    assert main(["explain", "--method", "magic", "--model", str(model_file), str(image_dir),
                 "--out", str(tmp_path / "o")]) == 2
    assert "unknown CAM method 'magic'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trio_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trio")
    paths = []
    for role, seed in (("t", 1), ("s", 2), ("b", 3)):
        torch.manual_seed(seed)
        path = folder / f"{role}.pth"
        torch.save(get_architecture("resnet8").build(3).state_dict(), path)
        paths.append(path)
    return paths, write_colour_dataset(folder / "data")


def test_metrics_writes_values_with_intervals(trio_files, tmp_path, capsys):
    (t, s, b), data = trio_files
    out = tmp_path / "metrics.json"
    assert main(["metrics", "--teacher", str(t), "--student", str(s), "--base", str(b), "--dataset", str(data),
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 33 and result["interval"]["method"].startswith("delete-one jackknife without its degenerate excess")
    assert {p["b"] for p in result["fss"]} == {"student", "base"}
    assert "FSS teacher.layer1 ~ student.layer1" in capsys.readouterr().out
    assert main(["metrics", "--teacher", str(t), "--student", str(s), "--dataset", str(data),
                 "--out", str(out)]) == 2


def test_metrics_rejects_bad_embeddings(trio_files, tmp_path, capsys):
    (t, s, _), data = trio_files
    np.save(tmp_path / "e.npy", np.zeros((5, 4)))
    assert main(["metrics", "--teacher", str(t), "--student", str(s), "--dataset", str(data), "--embeddings",
                 str(tmp_path / "e.npy"), "--out", str(tmp_path / "m.json")]) == 2
    assert "e.npy: shape (5, 4), expected 3×e" in capsys.readouterr().err


def test_explain_unicam_writes_distilled_and_residual(trio_files, image_dir, tmp_path):
    (t, s, b), data = trio_files
    out = tmp_path / "u"
    assert main(["explain", "--method", "unicam", "--teacher", str(t), "--student", str(s), "--base", str(b),
                 "--reference", str(data), "--n", "8", str(image_dir / "a.png"), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "unicam" and manifest["n"] == 8 and manifest["variant"] == "label-free"
    assert len(manifest["reference"]["hashes"]) == 7
    for key, folder in (("distilled", "distilled_S_given_B"), ("residual", "residual_B_given_S")):
        assert manifest["images"][0][key]["map"] == f"{folder}/a.npy"
        assert np.load(out / folder / "a.npy").shape == (40, 50)


def test_explain_unicam_keeps_every_images_record_whatever_the_batch_size(trio_files, image_dir, tmp_path, capsys):
    (t, s, b), data = trio_files
    base = ["explain", "--method", "unicam", "--teacher", str(t), "--student", str(s), "--base", str(b),
            "--reference", str(data), "--n", "6", str(image_dir)]
    layouts = []
    for batch in ("1", "16"):
        out = tmp_path / f"u{batch}"
        assert main([*base, "--out", str(out), "--batch-size", batch]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert [record["name"] for record in manifest["images"]] == ["a", "b"]
        layouts.append(sorted(str(p.relative_to(out)) for p in out.rglob("*")))
    assert layouts[0] == layouts[1]
    assert main([*base, "--out", str(tmp_path / "u1")]) == 2  # a rerun does not overwrite silently
    assert "overwrite" in capsys.readouterr().err


def test_images_with_the_same_name_in_different_folders_all_get_files(model_file, tmp_path, capsys):
    rng = np.random.default_rng(1)
    for folder in ("x", "y", "z"):
        (tmp_path / "imgs" / folder).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / folder / "same.png")
    out = tmp_path / "out"
    assert main(["explain", "--model", str(model_file), str(tmp_path / "imgs"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == ["same.npy", "same_1.npy", "same_2.npy"]
    assert "wrote 3 map(s)" in capsys.readouterr().out


@pytest.mark.parametrize("option, value, message", [
    ("--colormap", "rainbowz", "--colormap 'rainbowz'"),
    ("--opacity", "7", "--opacity 7.0"),
    ("--batch-size", "-1", "--batch-size -1"),
])
def test_bad_view_options_are_refused_before_anything_is_written(model_file, image_dir, tmp_path, capsys,
                                                                   option, value, message):
    out = tmp_path / "out"
    assert main(["explain", "--model", str(model_file), str(image_dir), "--out", str(out), option, value]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_export_writes_a_figure_and_its_data(trio_files, tmp_path, capsys):
    (t, s, b), data = trio_files
    out = tmp_path / "fig.svg"
    images = [str(data / "r" / "0.png"), str(data / "g" / "1.png")]
    assert main(["export", "--teacher", str(t), "--student", str(s), "--base", str(b), "--reference", str(data),
                 "--n", "8", *images, "--out", str(out), "--columns", "input,student,distilled,difference"]) == 0
    svg = out.read_text()
    assert svg.count("<image ") == 2 * 4 + 2
    manifest = json.loads((tmp_path / "fig_data" / "manifest.json").read_text())
    assert manifest["figure"]["columns"] == ["input", "student", "distilled", "difference"]
    assert [image["true_class"] for image in manifest["images"]] == [None, None]  # the models name no classes
    assert main(["export", "--teacher", str(t), "--student", str(s), *images, "--out", str(out),
                 "--columns", "input,teacher"]) == 2
    assert "fig.svg: exists (use --overwrite)" in capsys.readouterr().err
    assert main(["export", "--teacher", str(t), "--student", str(s), *images, "--out", str(tmp_path / "f.png"),
                 "--columns", "input,distilled"]) == 2
    assert "--reference" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()
