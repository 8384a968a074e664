"""Dataset scans in process: every row equals what compare_image and the faithfulness metrics give for
that image alone; unreadable files get a row; re-running resumes by file hash; the folder is guarded."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from float32_tolerances import (NETWORK_RTOL, PROBABILITY_ATOL, energy_tolerance, pearson_tolerance,
                                spearman_tolerance, top_iou_tolerance)
from kdx_engine.bundled import DEMO_DATASET, DEMO_MODELS
from kdx_engine.cams import deletion_insertion
from kdx_engine.comparison import ComparisonSettings, UniCamCache, compare_image
from kdx_engine.data import ImageFolderDataset, load_image, to_batch
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan, read_map, run_scan
from kdx_engine.scan.job import reference_set
from kdx_engine.zoo import write_demo_dataset
from scan_compare import assert_maps_close, assert_same_rows

SETTINGS = ScanSettings(unicam=True, faithfulness_steps=4, reference_n=8)


@pytest.fixture(scope="module")
def models():
    return ScanModels({role: str(DEMO_MODELS / f"{role}.pth") for role in ("teacher", "student", "base")}).load()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_demo_dataset(tmp_path_factory.mktemp("scan") / "data", n=12, split="test")
    (root / "circle" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def scanned(dataset, models, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "scan"
    job = prepare_scan(dataset, out, SETTINGS, models, reference_folder=DEMO_DATASET)
    summary = run_scan(job, models, batch_size=5)
    return out, summary, job


def _rows(out):
    return {row["path"]: row for row in pq.read_table(out / "scan.parquet").to_pylist()}


@pytest.mark.numerics
def test_every_row_equals_compare_image(scanned, models, dataset):
    out, summary, job = scanned
    assert summary.rows == 13 and summary.unreadable == 1
    _assert_rows_equal_compare_image(out, job, models, dataset)


def _assert_rows_equal_compare_image(out, job, models, dataset):
    """Each row equals compare_image on that image alone, up to float32 rounding: the scan runs the models
    on a batch, compare_image on one image, and the kernels (oneDNN's among them) may sum in another order
    for another batch size or thread count. Maps are compared relative to their magnitude (NETWORK_RTOL),
    values made from logits within PROBABILITY_ATOL, and each map metric within what the two versions of
    its maps allow (see float32_tolerances): errors of a real bug are 1e-2 or more."""
    rows = _rows(out)
    reference, cache = reference_set(job), UniCamCache()
    folder = ImageFolderDataset(dataset, class_names=job.class_names)
    for path, label in zip(folder.paths, folder.labels):
        if path.name == "broken.png":
            continue
        row = rows[path.relative_to(dataset).as_posix()]
        image = load_image(path)
        comparison = compare_image(models, image, label, ComparisonSettings(), reference=reference,
                                   unicam_cache=cache)
        assert row["sha256"] == image.sha256 and row["label"] == label and row["error"] is None
        assert row["has_mask"] == (image.mask is not None)
        maps = {}
        for role, prediction in comparison.predictions.items():
            assert row[f"{role}_predicted"] == prediction.predicted
            assert row[f"{role}_top1_prob"] == pytest.approx(prediction.probabilities.max(), abs=PROBABILITY_ATOL)
            assert row[f"{role}_correct"] == (prediction.predicted == label)
            maps[role] = read_map(out, row, f"gradcam_{role}"), comparison.panels[role].values
            assert_maps_close(*maps[role])
        assert row["kl_teacher_student"] == pytest.approx(comparison.kl_teacher_student, abs=PROBABILITY_ATOL)
        metrics = comparison.map_metrics
        pair = (*maps["teacher"], *maps["student"])
        tolerances = {"pearson": pearson_tolerance(*pair), "spearman": spearman_tolerance(*pair),
                      "top_iou": top_iou_tolerance(*pair)}
        for name, tolerance in tolerances.items():
            assert row[f"gradcam_ts_{name}"] == pytest.approx(metrics[name], abs=tolerance), name
        if image.mask is None:
            assert row["gradcam_teacher_energy"] is None and row["gradcam_student_pointing"] is None
        else:
            for role, side in (("teacher", "a"), ("student", "b")):
                assert row[f"gradcam_{role}_energy"] == pytest.approx(metrics[f"energy_{side}"],
                                                                      abs=energy_tolerance(*maps[role]))
                scanned_map, single_map = (np.nan_to_num(m, nan=-np.inf) for m in maps[role])
                if np.argmax(scanned_map) == np.argmax(single_map):  # else a near-tie that rounding settled
                    assert row[f"gradcam_{role}_pointing"] == metrics[f"pointing_{side}"]
        for key in ("distilled", "residual"):
            panel = comparison.panels[key]
            assert_maps_close(read_map(out, row, f"unicam_{key}"), panel.values)
            assert row[f"unicam_{key}_score"] == pytest.approx(panel.details["score"], rel=NETWORK_RTOL)


@pytest.mark.numerics
def test_a_batch_of_mixed_sizes_presets_and_masks_equals_compare_image(models, dataset, tmp_path):
    """Images of several sizes in one batch (some without masks), and a Student that resizes and crops
    (its map is undefined outside its crop): each row still equals compare_image on that image alone."""
    import shutil

    mixed = tmp_path / "mixed"
    sizes = [(48, 48), (72, 40), (40, 90), (72, 40)]
    for n, path in enumerate(sorted(p for p in dataset.rglob("0*[0-9].png"))[:8]):
        target = mixed / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        width, height = sizes[n % len(sizes)]
        Image.open(path).convert("RGB").resize((width, height), Image.Resampling.BILINEAR).save(target)
        mask = path.with_name(path.stem + ".mask.png")
        if n % 3 != 2 and mask.exists():
            Image.open(mask).resize((width, height), Image.Resampling.NEAREST).save(target.with_name(mask.name))
    student_file = tmp_path / "student.pth"
    shutil.copy(DEMO_MODELS / "student.pth", student_file)
    sidecar = json.loads((DEMO_MODELS / "student.pth.kdx.json").read_text())
    (tmp_path / "student.pth.kdx.json").write_text(json.dumps({**sidecar, "resize": 56}))
    files = {"teacher": str(DEMO_MODELS / "teacher.pth"), "student": str(student_file),
             "base": str(DEMO_MODELS / "base.pth")}
    mixed_models = ScanModels(files).load()
    assert mixed_models["student"].backend.info.preprocessing.resize == 56
    out = tmp_path / "scan"
    job = prepare_scan(mixed, out, SETTINGS, mixed_models, reference_folder=DEMO_DATASET)
    summary = run_scan(job, mixed_models, batch_size=8)
    assert summary.rows == 8 and summary.unreadable == 0
    rows = _rows(out)
    assert {(r["width"], r["height"]) for r in rows.values()} == set(sizes)
    assert 0 < sum(r["has_mask"] for r in rows.values()) < 8
    assert any(np.isnan(read_map(out, r, "gradcam_student")).any() for r in rows.values())
    _assert_rows_equal_compare_image(out, job, mixed_models, mixed)


@pytest.mark.numerics
def test_faithfulness_equals_the_engine_metric_on_one_image(scanned, models, dataset):
    out, _, _ = scanned
    row = _rows(out)["square/00001.png"] if "square/00001.png" in _rows(out) else next(
        r for r in _rows(out).values() if r["error"] is None)
    student = models["student"].backend
    x = to_batch([load_image(row["file"])], student.info.preprocessing)
    from kdx_engine.cams import TargetRule, cam_method

    cam = cam_method("gradcam")(student, layer=models["student"].layer)
    explanation = cam(x, TargetRule("predicted"))
    direct = deletion_insertion(x, explanation.maps, student.logits, explanation.targets, steps=4)
    # the scan ran a batch, this one image: probabilities from two float32 paths
    assert row["gradcam_student_deletion_auc"] == pytest.approx(float(direct.deletion_auc[0]), abs=PROBABILITY_ATOL)
    assert row["gradcam_student_insertion_auc"] == pytest.approx(float(direct.insertion_auc[0]), abs=PROBABILITY_ATOL)


def test_unreadable_image_gets_a_row_with_the_reason(scanned):
    out, _, _ = scanned
    broken = _rows(out)["circle/broken.png"]
    assert "broken.png" in broken["error"] and broken["teacher_predicted"] is None
    csv = (out / "scan.csv").read_text()
    assert "broken.png" in csv and csv.count("\n") == 14  # header + 13 rows


def test_rerun_skips_done_images_and_rescans_changed_ones(dataset, models, tmp_path):
    out = tmp_path / "scan"
    settings = ScanSettings(faithfulness_steps=0)
    first = run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=4)
    assert first.scanned == 13
    changed = dataset / "square" / sorted(p.name for p in (dataset / "square").glob("0*[0-9].png"))[0]
    original = changed.read_bytes()
    try:
        pixels = np.asarray(Image.open(changed)).copy()
        pixels[:8] = 255
        Image.fromarray(pixels).save(changed)
        second = run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=4)
    finally:
        changed.write_bytes(original)
    assert second.skipped == 12 and second.scanned == 1  # the unreadable file is unchanged: done too
    rows = _rows(out)
    assert len(rows) == 13
    assert rows[changed.relative_to(dataset).as_posix()]["sha256"] != load_image(changed).sha256


def test_a_folder_with_another_scan_is_refused_without_overwrite(dataset, models, tmp_path):
    out = tmp_path / "scan"
    run_scan(prepare_scan(dataset, out, ScanSettings(faithfulness_steps=0), models), models, batch_size=8)
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_scan(dataset, out, ScanSettings(faithfulness_steps=0, top_k=2), models)
    job = prepare_scan(dataset, out, ScanSettings(faithfulness_steps=0, top_k=2), models, overwrite=True)
    assert not job.done


@pytest.mark.numerics
def test_batch_size_does_not_change_the_numbers(dataset, models, tmp_path):
    settings = ScanSettings(faithfulness_steps=0)
    tables = []
    for batch in (3, 7):
        out = tmp_path / f"b{batch}"
        run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=batch)
        tables.append(_rows(out))
    for path, row in tables[0].items():  # other batch sizes, other kernels: equal up to float32 rounding
        assert_same_rows(tmp_path / "b3", row, tmp_path / "b7", tables[1][path])


def test_cancel_keeps_the_finished_batches_and_a_rerun_resumes(dataset, models, tmp_path):
    from kdx_engine.jobs import Cancelled, Progress

    out, settings = tmp_path / "scan", ScanSettings(faithfulness_steps=0)
    progress = Progress(lambda fraction, message: progress.cancel() if fraction > 0 else None)
    with pytest.raises(Cancelled):
        run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=4, progress=progress)
    # Cancelled after the first batch's rows: the second batch, whose models had run by then, is written
    # too (nothing computed is lost); the third is never started
    assert not (out / "scan.parquet").exists() and len(list((out / "parts").glob("*.parquet"))) == 2
    resumed = run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=4)
    assert resumed.skipped == 8 and resumed.scanned == 5 and resumed.rows == 13


def test_an_error_while_writing_rows_stops_the_scan_and_keeps_the_parts_before_it(dataset, models, tmp_path,
                                                                                 monkeypatch):
    from kdx_engine.scan import local_engine

    out, settings = tmp_path / "scan", ScanSettings(faithfulness_steps=0)
    write, calls = local_engine.write_results, []

    def full_disk_on_the_second_batch(job, results):
        calls.append(len(results))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return write(job, results)

    monkeypatch.setattr(local_engine, "write_results", full_disk_on_the_second_batch)
    with pytest.raises(OSError, match="No space left"):
        run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=4)
    assert len(calls) == 2 and len(list((out / "parts").glob("*.parquet"))) == 1
    monkeypatch.setattr(local_engine, "write_results", write)
    resumed = run_scan(prepare_scan(dataset, out, settings, models), models, batch_size=4)
    assert resumed.skipped == 4 and resumed.scanned == 9 and resumed.rows == 13
