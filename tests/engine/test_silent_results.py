"""Results that used to be wrong without a word (issue 32): ``--target true`` on unlabelled images, a
Teacher without class names beside a Student with them, neighbourhoods decided by ties, and a concepts
grid finer than the model's input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_cifar
from kdx_engine.cli import main
from kdx_engine.embeddings.neighbours import tied_neighbourhoods
from kdx_engine.labels import labelling_class_names
from kdx_engine.models import Preprocessing, write_sidecar
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan

NAMES = ("zebra", "apple", "mango")  # not in sorted order: sorted folders would be apple, mango, zebra


def _model(path, seed, names=None):
    torch.save(make_cifar("resnet8", num_classes=3, seed=seed).state_dict(), path)
    if names:
        write_sidecar(path, Preprocessing(input_size=32, resize=None, class_names=names, source="sidecar"))
    return path


def _tree(root):
    rng = np.random.default_rng(0)
    for name in NAMES:
        (root / name).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{k}.png")
    return root


def test_target_true_on_an_unlabelled_image_records_the_prediction(tmp_path, capsys):
    teacher, student = _model(tmp_path / "t.pth", 1, NAMES), _model(tmp_path / "s.pth", 2, NAMES)
    image = tmp_path / "loose.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    assert main(["export", "--teacher", str(teacher), "--student", str(student), str(image), "--columns",
                 "input,teacher,student", "--target", "true", "--out", str(tmp_path / "fig.png")]) == 0
    assert "--target true: 1 of 1 image(s) have no label" in capsys.readouterr().out
    panels = json.loads((tmp_path / "fig_data" / "manifest.json").read_text())["images"][0]["panels"]
    assert {p["target_rule"] for p in panels.values()} == {"predicted (no label)"}
    assert all("(predicted (no label))" in p["subtitle"] for p in panels.values())


def test_a_labelled_image_keeps_the_true_rule(tmp_path):
    teacher, student = _model(tmp_path / "t.pth", 1, NAMES), _model(tmp_path / "s.pth", 2, NAMES)
    data = _tree(tmp_path / "data")
    assert main(["export", "--teacher", str(teacher), "--student", str(student), str(data / "mango" / "0.png"),
                 "--columns", "input,teacher,student", "--target", "true", "--out", str(tmp_path / "fig.png")]) == 0
    image = json.loads((tmp_path / "fig_data" / "manifest.json").read_text())["images"][0]
    assert image["true_class"] == 2
    assert {p["target_rule"] for p in image["panels"].values()} == {"true"}
    assert {p["target"] for p in image["panels"].values()} == {2}


def test_a_teacher_without_names_beside_a_student_with_them_labels_by_the_students(tmp_path):
    teacher, student = _model(tmp_path / "t.pth", 1), _model(tmp_path / "s.pth", 2, NAMES)
    data = _tree(tmp_path / "data")
    models = ScanModels({"teacher": str(teacher), "student": str(student)}).load()
    assert models["teacher"].backend.info.preprocessing.class_names == ("class_0", "class_1", "class_2")
    job = prepare_scan(data, tmp_path / "scan", ScanSettings(faithfulness_steps=0), models)
    assert job.class_names == NAMES and job.label_note is None
    by_folder = {path.parent.name: label for path, label in zip(job.paths, job.labels)}
    assert by_folder == {"zebra": 0, "apple": 1, "mango": 2}


def test_labelling_names_prefer_real_names_in_role_order():
    placeholders = ("class_0", "class_1")
    assert labelling_class_names([placeholders, ("a", "b"), ("c", "d")]) == ("a", "b")
    assert labelling_class_names([("x", "y"), ("a", "b")]) == ("x", "y")
    assert labelling_class_names([placeholders, placeholders]) == placeholders
    assert labelling_class_names([]) == ()


def test_identical_images_are_said_to_be_decided_by_ties():
    features = np.ones((40, 8))
    labels = [k % 2 for k in range(40)]
    assert tied_neighbourhoods(features, 10) == 40
    spread = np.random.default_rng(0).normal(size=(40, 8))
    assert tied_neighbourhoods(spread, 10) == 0


def test_the_embedding_metrics_note_ties(tmp_path):
    from kdx_engine.embeddings.features import ModelOutputs
    from kdx_engine.embeddings.summary import embedding_metrics

    n = 20
    outputs = ModelOutputs(paths=tuple(f"{k}.png" for k in range(n)), labels=tuple(k % 2 for k in range(n)),
                           features={"teacher": np.ones((n, 4)), "student": np.random.default_rng(1).normal(size=(n, 4))},
                           logits={"teacher": np.zeros((n, 2)), "student": np.zeros((n, 2))})
    notes = embedding_metrics(outputs, k=5).notes
    assert any(note.startswith("teacher: 20 of 20 image(s) have another image tied") for note in notes)
    assert not any(note.startswith("student:") for note in notes)


def test_a_concept_grid_finer_than_the_input_is_refused(tmp_path, capsys):
    student = _model(tmp_path / "s.pth", 2, NAMES)
    data = _tree(tmp_path / "data")
    assert main(["concepts", "--student", str(student), str(data), "--out", str(tmp_path / "out"),
                 "--grid", "64", "--draws", "4", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "a 64×64 concept grid is finer than the student's 32×32 input" in err and "at most 32" in err
    assert not (tmp_path / "out").exists()


def test_label_guided_unicam_takes_the_query_s_class_from_its_folder(tmp_path):
    from kdx_engine.comparison import ComparisonModel, ComparisonSettings, compare_image
    from kdx_engine.data import load_image
    from kdx_engine.models import load_model
    from kdx_engine.unicam import ReferenceSet

    teacher, student = _model(tmp_path / "t.pth", 1, NAMES), _model(tmp_path / "s.pth", 2, NAMES)
    reference_root = _tree(tmp_path / "reference")
    loose = tmp_path / "loose.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(loose)
    backends = {"teacher": load_model(teacher), "student": load_model(student)}
    models = {role: ComparisonModel(b, "layer3") for role, b in backends.items()}
    reference = ReferenceSet.from_folder(reference_root, n=6, seed=0, class_names=NAMES)
    settings = ComparisonSettings(unicam_variant="label-guided", reference_n=6)
    image = load_image(loose)
    by_prediction = compare_image(models, image, None, settings, reference=reference, panels=("distilled",))
    other = next(k for k in range(3) if k != by_prediction.predictions["teacher"].predicted)
    folder = tmp_path / "query" / NAMES[other]
    folder.mkdir(parents=True)
    query = folder / "q.png"
    query.write_bytes(loose.read_bytes())
    assert main(["explain", "--method", "unicam", "--variant", "label-guided", "--teacher", str(teacher), "--student",
                 str(student), "--reference", str(reference_root), "--n", "6", str(query), "--out", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["images"][0]["true_class"] == other
    written = np.load(tmp_path / "out" / manifest["images"][0]["distilled"]["map"])
    by_folder = compare_image(models, load_image(query), other, settings, reference=reference, panels=("distilled",))
    expected, guessed = by_folder.panels["distilled"].values, by_prediction.panels["distilled"].values
    np.testing.assert_allclose(written, expected, rtol=1e-6, atol=1e-7 * np.abs(expected).max())  # stored as float32
    assert np.abs(written - guessed).max() > 1e-3 * np.abs(guessed).max()  # the prediction's label gives another map
