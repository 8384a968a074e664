"""Dataset metrics: values equal the statistics computed directly; intervals, n, labels, cancel."""
import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import backend_for, write_colour_dataset
from float32_tolerances import STATISTIC_ATOL
from kdx_engine.data import ImageFolderDataset, to_batch
from kdx_engine.jobs import Cancelled, Progress
from kdx_engine.metrics import dataset_metrics, matched_stages
from kdx_engine.models.registry import get_architecture
from kdx_engine.stats import debiased_linear_cka, linear_cka, partial_r2, r2_star, semi_partial_r2


def _model(name, seed):
    torch.manual_seed(seed)
    return get_architecture(name).build(3).eval()


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = write_colour_dataset(tmp_path_factory.mktemp("ds"), ("red", "green", "blue"), per_class=12, seed=1)
    (root / "red" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def trio():
    return (backend_for(_model("resnet20", 1), 3, 32), backend_for(_model("resnet8", 2), 3, 32),
            backend_for(_model("resnet8", 3), 3, 32))


def _features(backend, dataset, layer):
    images = [dataset[i][0] for i in range(len(dataset)) if dataset.paths[i].name != "broken.png"]
    return backend.forward(to_batch(images, backend.info.preprocessing), [layer]).activations[layer]


@pytest.mark.numerics
def test_values_equal_direct_statistics(dataset_root, trio):
    teacher, student, base = trio
    dataset = ImageFolderDataset(dataset_root, class_names=("red", "green", "blue"))
    result = dataset_metrics(teacher, student, dataset, base=base, seed=0, batch_size=10)
    assert result.n == 36 and result.n_labelled == 36 and len(result.skipped) == 1
    assert result.stages == {"teacher": ["layer1", "layer2", "layer3"], "student": ["layer1", "layer2", "layer3"],
                             "base": ["layer1", "layer2", "layer3"]}
    # the metric reads batches of 10, _features one batch: float32 features on two paths (STATISTIC_ATOL)
    t3, s3, b3 = (_features(m, dataset, "layer3") for m in trio)
    s1 = _features(student, dataset, "layer1")
    fss = {(p.a, p.layer_a, p.b, p.layer_b): p.result for p in result.fss}
    assert fss[("teacher", "layer3", "student", "layer3")].value == pytest.approx(float(r2_star(t3, s3)), abs=STATISTIC_ATOL)
    assert fss[("student", "layer3", "base", "layer3")].value == pytest.approx(float(r2_star(s3, b3)), abs=STATISTIC_ATOL)
    ts_matrix = result.fss_matrix[0]
    assert ts_matrix.values[2][0].value == pytest.approx(float(r2_star(t3, s1)), abs=STATISTIC_ATOL)
    cka = result.cka_matrix[0].values[2][2]
    assert cka.value == pytest.approx(float(debiased_linear_cka(t3, s3)), abs=STATISTIC_ATOL)
    assert cka.low <= cka.value <= cka.high and result.cka_estimator.startswith("debiased linear CKA")
    labels = torch.tensor([c for c in range(3) for _ in range(12)])
    onehot = torch.nn.functional.one_hot(labels).double()
    rs = {(r.model, r.layer): r.result for r in result.rs}
    assert rs[("student", "layer3")].value == pytest.approx(float(r2_star(s3, onehot)), abs=STATISTIC_ATOL)
    partial = {(r.model, r.removed, r.form, r.layer): r.result for r in result.partial_rs}
    assert partial[("student", "base", "semi-partial", "layer3")].value == pytest.approx(
        float(semi_partial_r2(s3, onehot, b3)), abs=STATISTIC_ATOL)
    assert partial[("base", "student", "partial", "layer3")].value == pytest.approx(
        float(partial_r2(b3, onehot, s3)), abs=STATISTIC_ATOL)
    for value in [*fss.values(), *rs.values()]:
        assert value.low <= value.high and math.isfinite(value.low)


def test_metrics_need_32_images(tmp_path, trio):
    (tmp_path / "a").mkdir()
    for i in range(10):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8) + i).save(tmp_path / "a" / f"{i}.png")
    with pytest.raises(ValueError, match="10 readable images; dataset metrics need n ≥ 32"):
        dataset_metrics(*trio[:2], ImageFolderDataset(tmp_path))


def test_save_writes_json_and_refuses_overwrite(dataset_root, trio, tmp_path):
    result = dataset_metrics(*trio[:2], ImageFolderDataset(dataset_root), seed=3)
    path = result.save(tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert data["n"] == 36 and data["seed"] == 3
    assert data["fss"][0]["layer_a"] == "layer1" and "low" in data["fss"][0]["result"]
    assert "R²*" in data["estimator"] and "torch" in data["versions"]
    with pytest.raises(FileExistsError):
        result.save(tmp_path / "m.json")


def test_cancel_stops_the_job(dataset_root, trio):
    seen = []

    def callback(fraction, message):
        seen.append(fraction)
        progress.cancel()  # the user presses Cancel after the first report

    progress = Progress(callback)
    with pytest.raises(Cancelled):
        dataset_metrics(*trio[:2], ImageFolderDataset(dataset_root), progress=progress, batch_size=8)
    assert len(seen) == 1


def test_matched_stages_by_depth():
    assert matched_stages(["a", "b", "c"], ["x", "y", "z"]) == [(0, 0), (1, 1), (2, 2)]
    assert matched_stages(["a", "b", "c", "d"], ["x", "y"]) == [(0, 0), (3, 1)]
    assert matched_stages(["a", "b"], ["w", "x", "y", "z"]) == [(0, 0), (1, 3)]


def _strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not valid JSON")
    return json.loads(text, parse_constant=refuse)


def test_saved_json_is_strict_with_null_and_a_reason_for_undefined_values(dataset_root, trio, tmp_path):
    from kdx_engine.metrics import Value

    result = dataset_metrics(*trio[:2], ImageFolderDataset(dataset_root), seed=3)
    undefined = Value(math.nan, math.nan, math.nan, "undefined: a variance term is zero")
    interval_only = Value(0.5, math.nan, math.nan, "interval undefined: 1 defined leave-one-out value(s)")
    broken = dataclasses.replace(result, rs=[dataclasses.replace(result.rs[0], result=undefined),
                                             dataclasses.replace(result.rs[1], result=interval_only)])
    data = _strict_json(broken.save(tmp_path / "m.json").read_text())
    assert data["rs"][0]["result"] == {"value": None, "low": None, "high": None,
                                       "reason": "undefined: a variance term is zero"}
    assert data["rs"][1]["result"]["value"] == 0.5 and data["rs"][1]["result"]["low"] is None
    assert data["rs"][1]["result"]["reason"].startswith("interval undefined")
    assert data["interval"]["method"].startswith("delete-one jackknife without its degenerate excess") and data["interval"]["level"] == 0.95
    assert data["interval"]["cka_method"].startswith("delete-one jackknife without its degenerate excess")
    assert data["cka_estimator"].startswith("debiased linear CKA (U-centred HSIC")


@pytest.mark.numerics
def test_the_plain_linear_cka_stays_available_by_name(dataset_root, trio):
    dataset = ImageFolderDataset(dataset_root)
    result = dataset_metrics(*trio[:2], dataset, cka="biased")
    t3, s3 = (_features(m, dataset, "layer3") for m in trio[:2])
    assert result.cka_matrix[0].values[2][2].value == pytest.approx(float(linear_cka(t3, s3)), abs=STATISTIC_ATOL)
    assert result.cka_estimator.startswith("linear CKA (plug-in")
    assert "bias-corrected" in result.interval["cka_method"] and "[0, 1] for CKA" in result.interval["range"]
    with pytest.raises(ValueError, match="unknown CKA estimator 'kernel'"):
        dataset_metrics(*trio[:2], dataset, cka="kernel")


def test_intervals_are_the_jackknife_and_hold_the_fss_and_rs_estimates(dataset_root, trio):
    result = dataset_metrics(*trio[:2], ImageFolderDataset(dataset_root, class_names=("red", "green", "blue")))
    for value in [p.result for p in result.fss] + [r.result for r in result.rs + result.partial_rs]:
        assert value.low <= value.value <= value.high and value.reason is None
    assert result.interval["method"].startswith("delete-one jackknife without its degenerate excess")


def test_rs_on_an_image_folder_with_models_that_carry_no_class_names(tmp_path):
    """torchvision-style models have only placeholder class names; RS follows the sorted folders."""
    from kdx_engine.models.loading import _with_class_names

    root = write_colour_dataset(tmp_path / "pets", ("dog", "cat"), per_class=17, seed=2)
    teacher, student = (backend_for(_model(name, seed), 2, 32) for name, seed in (("resnet8", 4), ("resnet8", 5)))
    names = _with_class_names(teacher.info.preprocessing, 2, root).class_names
    assert names == ("class_0", "class_1")
    dataset = ImageFolderDataset(root, class_names=names)
    result = dataset_metrics(teacher, student, dataset)
    assert result.n == 34 and result.n_labelled == 34
    assert len(result.rs) == 2 * len(result.stages["teacher"]) and result.partial_rs
    assert all(math.isfinite(r.result.value) and math.isfinite(r.result.low) for r in result.rs)
    assert any("sorted folder names" in note and "cat → 0" in note and "dog → 1" in note for note in result.notes)
    assert not any("without a true label" in note for note in result.notes)
