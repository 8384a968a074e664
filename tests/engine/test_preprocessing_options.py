"""Preprocessing on the command line (issue 24): --preprocessing FILE, --input-size, --resize, --mean, --std
for models without a sidecar; one note per model whose preprocessing is a preset or fallback; every
output file records each model's preprocessing, where it came from, and what its output is."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import write_colour_dataset
from kdx_engine.cli import main
from kdx_engine.models.preprocessing import Preprocessing, write_sidecar
from kdx_engine.models.registry import get_architecture


def _cifar_script(path, classes: int = 3):
    """A TorchScript net that runs at 32 px only (a Linear after a flatten); no sidecar."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 16 * 16, classes)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 32, 32)), str(path))
    return path


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder


def _info(args, capsys) -> tuple[dict, str]:
    assert main(["info", *map(str, args), "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_input_size_option_sets_the_size_of_a_model_without_sidecar(tmp_path, capsys):
    data, err = _info([_cifar_script(tmp_path / "net.pt"), "--input-size", "32", "--mean", "0.5", "0.5", "0.5",
                       "--std", "0.25", "0.25", "0.25"], capsys)
    assert (data["input_size"], data["resize"], data["mean"], data["std"]) == (32, None, [0.5] * 3, [0.25] * 3)
    assert data["preprocessing_source"] == "command-line"
    assert not any("common sizes" in note for note in data["notes"])  # the size was given, not searched
    assert "no sidecar" not in err  # the user's own preprocessing: nothing to warn about


def test_fallback_prints_one_note_and_info_says_which_size_ran(tmp_path, capsys):
    data, err = _info([_cifar_script(tmp_path / "net.pt")], capsys)
    assert data["input_size"] == 32 and data["preprocessing_source"] == "imagenet-fallback"
    assert data["preprocessing_origin"] == "no sidecar: ImageNet preset (mean/std), 32 px, the first common size it runs at"
    assert err.count("note: net.pt: no sidecar:") == 1
    assert data["output"]["kind"] == "logits"


def test_preprocessing_file_applies_like_a_sidecar_and_a_sidecar_wins(tmp_path, capsys):
    spec = tmp_path / "cifar.json"
    spec.write_text(json.dumps({"input_size": 32, "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2],
                                "class_names": ["a", "b", "c"]}))
    model = _cifar_script(tmp_path / "net.pt")
    data, _ = _info([model, "--preprocessing", spec, "--std", "0.3", "0.3", "0.3"], capsys)
    assert (data["input_size"], data["mean"], data["std"], data["classes"]) == (32, [0.4] * 3, [0.3] * 3, ["a", "b", "c"])
    write_sidecar(model, Preprocessing(input_size=32, mean=(0.1, 0.1, 0.1), source="sidecar"))
    data, err = _info([model, "--preprocessing", spec], capsys)
    assert data["mean"] == [0.1] * 3 and data["preprocessing_source"] == "sidecar"
    assert "net.pt: its sidecar's preprocessing is used; the preprocessing options do not apply to it" in err


@pytest.mark.parametrize("options,named", [
    (["--input-size", "0"], "--input-size"), (["--input-size", "99999"], "--input-size"),
    (["--std", "0", "1", "1"], "--std"), (["--resize", "-4"], "--resize"),
])
def test_bad_options_are_refused_naming_the_option(options, named, tmp_path, capsys):
    assert main(["info", str(_cifar_script(tmp_path / "net.pt")), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdx: error:") and named in err


@pytest.mark.parametrize("content,named", [
    ({"input_sise": 32}, "unknown key 'input_sise'"), ({"input_size": "32"}, "'input_size'"),
    ({"mean": [0.5, 0.5]}, "'mean'"), ([1, 2], "JSON object"),
])
def test_bad_preprocessing_file_names_the_key(content, named, tmp_path, capsys):
    spec = tmp_path / "pre.json"
    spec.write_text(json.dumps(content))
    assert main(["info", str(_cifar_script(tmp_path / "net.pt")), "--preprocessing", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "pre.json" in err and named in err


def test_explain_manifest_records_preprocessing_origin_and_output(tmp_path, images, capsys):
    out = tmp_path / "maps"
    assert main(["explain", "--model", str(_cifar_script(tmp_path / "net.pt")), str(images), "--out", str(out)]) == 0
    assert "note: net.pt: no sidecar: ImageNet preset (mean/std), 32 px" in capsys.readouterr().err
    model = json.loads((out / "manifest.json").read_text())["model"]
    assert model["preprocessing"]["input_size"] == 32 and model["preprocessing"]["source"] == "imagenet-fallback"
    assert model["preprocessing_origin"].startswith("no sidecar: ImageNet preset")
    assert model["output"] == {"kind": "logits", "logits_from": "output", "where": None, "description": "logits"}


def test_metrics_json_records_each_models_preprocessing(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    paths = []
    for role, seed in (("t", 1), ("s", 2)):
        torch.manual_seed(seed)
        paths.append(folder / f"{role}.pth")
        torch.save(get_architecture("resnet8").build(3).state_dict(), paths[-1])
    out = tmp_path / "metrics.json"
    assert main(["metrics", "--teacher", str(paths[0]), "--student", str(paths[1]), "--dataset",
                 str(write_colour_dataset(tmp_path / "data")), "--out", str(out), "--no-embeddings",
                 "--input-size", "32", "--mean", "0.5", "0.5", "0.5"]) == 0
    models = json.loads(out.read_text())["models"]
    for role in ("teacher", "student"):
        assert models[role]["preprocessing"]["mean"] == [0.5] * 3
        assert models[role]["preprocessing"]["source"] == "command-line"
        assert models[role]["output"]["kind"] == "logits"
