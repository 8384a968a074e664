"""Files that are not what a reader expects (issue 32): FIFOs and links to devices inside a dataset are
skipped and named, never read; file names that are not UTF-8 or are very long go through every command
that writes; a scan of a dataset that lost images keeps no rows for them."""
from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from kdx_engine.atomic_files import atomic_write_text
from kdx_engine.bundled import DEMO_MODELS
from kdx_engine.cli import main
from kdx_engine.messages import printable
from kdx_engine.output_paths import MAX_STEM_BYTES, output_stem
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan, run_scan
from kdx_engine.zoo import write_demo_dataset

LATIN1 = os.fsdecode(b"caf\xe9")  # a Latin-1 name: not UTF-8, so Python holds it with a surrogate escape
LONG = "x" * 240  # with ".png", 244 bytes: near the file system's 255


@pytest.fixture(scope="module")
def models():
    return ScanModels({role: str(DEMO_MODELS / f"{role}.pth") for role in ("teacher", "student")}).load()


@pytest.fixture()
def dataset(tmp_path):
    return write_demo_dataset(tmp_path / "data", n=6, split="test")


def _rows(out):
    return {row["path"]: row for row in pq.read_table(out / "scan.parquet").to_pylist()}


def test_special_entries_of_a_dataset_are_skipped_and_named(dataset, models, tmp_path):
    folder = next(p for p in sorted(dataset.iterdir()) if p.is_dir())
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    summary = run_scan(prepare_scan(dataset, tmp_path / "scan", ScanSettings(faithfulness_steps=0), models), models)
    rows = _rows(tmp_path / "scan")
    assert summary.unreadable == 2 and len(rows) == 8
    assert rows[f"{folder.name}/pipe.png"]["error"] == "pipe.png: is a FIFO (named pipe), not a regular file"
    assert rows[f"{folder.name}/zero.png"]["error"] == "zero.png: is a character device, not a regular file"


def test_a_rescan_of_a_dataset_that_lost_images_keeps_no_rows_for_them(dataset, models, tmp_path):
    out, settings = tmp_path / "scan", ScanSettings(faithfulness_steps=0)
    assert run_scan(prepare_scan(dataset, out, settings, models), models).rows == 6
    gone = sorted(p for p in dataset.rglob("*.png") if not p.name.endswith(".mask.png"))[:2]
    for path in gone:
        path.unlink()
    summary = run_scan(prepare_scan(dataset, out, settings, models), models)
    assert summary.rows == 4 and summary.skipped == 4
    rows = _rows(out)
    assert len(rows) == 4 and not {p.relative_to(dataset).as_posix() for p in gone} & set(rows)
    assert json.loads((out / "manifest.json").read_text())["rows"] == 4


def _hostile_names(dataset):
    folder = next(p for p in sorted(dataset.iterdir()) if p.is_dir())
    images = sorted(p for p in folder.glob("*.png") if not p.name.endswith(".mask.png"))
    latin = shutil.copy(images[0], folder / f"{LATIN1}.png")
    long = shutil.copy(images[1], folder / f"{LONG}.png")
    return folder, latin, long


def test_names_that_are_not_utf8_or_very_long_go_through_every_command(dataset, tmp_path, capfd):
    folder, latin, long = _hostile_names(dataset)
    t, s = str(DEMO_MODELS / "teacher.pth"), str(DEMO_MODELS / "student.pth")
    out = tmp_path / "out"
    assert main(["scan", str(dataset), "--teacher", t, "--student", s, "--out", str(out / "scan")]) == 0
    rows = _rows(out / "scan")
    assert f"{folder.name}/caf\\xe9.png" in rows and f"{folder.name}/{LONG}.png" in rows
    assert main(["explain", "--method", "gradcam", "--model", s, str(latin), str(long), "--out",
                 str(out / "explain")]) == 0
    manifest = json.loads((out / "explain" / "manifest.json").read_text())
    assert len(manifest["images"]) == 2
    assert main(["export", "--teacher", t, "--student", s, str(latin), str(long), "--columns",
                 "input,teacher,student", "--out", str(out / "fig.pdf")]) == 0
    assert (out / "fig.pdf").stat().st_size > 0
    assert "caf\\xe9" in (out / "fig_data" / "metrics.csv").read_text(encoding="utf-8")
    assert main(["concepts", "--student", s, str(latin), str(long), "--out", str(out / "concepts"),
                 "--grid", "4", "--draws", "4", "--steps", "2"]) == 0
    assert (out / "concepts" / "images.csv").read_text(encoding="utf-8").count("\n") == 3
    err = capfd.readouterr().err
    assert "Traceback" not in err and "error" not in err
    every_name = [os.fsencode(p.name) for p in out.rglob("*")]
    assert max(map(len, every_name)) <= 255


def test_output_stems_are_printable_bounded_and_distinct():
    assert printable(LATIN1) == "caf\\xe9"
    assert output_stem(LATIN1) == "caf_xe9"
    first, second = output_stem("é" * 200 + "a"), output_stem("é" * 200 + "b")
    assert first != second and len(first.encode()) <= MAX_STEM_BYTES and len(second.encode()) <= MAX_STEM_BYTES
    assert output_stem("image") == "image"


def test_an_atomic_write_of_a_long_name_leaves_its_temporary_within_the_limit(tmp_path):
    path = tmp_path / ("y" * 250)
    atomic_write_text(path, "done")
    assert path.read_text() == "done" and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("damage", ["deleted", "truncated", "replaced"])
def test_a_resume_does_not_trust_a_damaged_map_shard(dataset, models, tmp_path, damage):
    from kdx_engine.scan import read_map

    out, settings = tmp_path / "scan", ScanSettings(faithfulness_steps=0)
    job = prepare_scan(dataset, out, settings, models)
    run_scan(job, models, batch_size=2)
    expected = {path: read_map(out, row, job.map_keys[0]) for path, row in _rows(out).items()}
    shards = sorted((out / "maps" / job.map_keys[0]).glob("*.npy"))
    assert len(shards) == 3
    if damage == "deleted":
        shards[0].unlink()
    elif damage == "truncated":
        shards[0].write_bytes(shards[0].read_bytes()[:-64])
    else:
        shards[0].write_bytes(shards[1].read_bytes())
    again = prepare_scan(dataset, out, settings, models)
    assert again.resume_note is not None and "1 part(s)" in again.resume_note
    summary = run_scan(again, models, batch_size=2)
    assert summary.scanned == 2 and summary.skipped == 4 and summary.rows == 6
    for path, row in _rows(out).items():
        assert read_map(out, row, job.map_keys[0]) == pytest.approx(expected[path], nan_ok=True)


def test_a_staged_folder_replaces_its_target_whole_or_not_at_all(tmp_path):
    import os
    import time

    from kdx_engine.atomic_files import clean_stale_temporaries, staged_folder

    target = tmp_path / "result"
    with staged_folder(target) as staging:
        (staging / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with staged_folder(target) as staging:
            (staging / "a.txt").write_text("second, half done")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["result"] and (target / "a.txt").read_text() == "first"
    left = tmp_path / ".result.kdx-tmp-abcd1234"  # what a SIGKILL midway leaves
    left.mkdir()
    (left / "a.txt").write_text("half")
    old = time.time() - 7200
    os.utime(left, (old, old))
    assert clean_stale_temporaries(tmp_path) == [left]
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


@pytest.mark.parametrize("name, neighbour", [("best", "config.json"), ("best.json", None), ("student_best", "best.json")])
def test_a_toolkits_checkpoint_is_sniffed_by_content_not_by_its_name(tmp_path, capsys, name, neighbour):
    """mdistiller-style ``best`` files (no extension, or a misleading one) beside JSON that is not theirs
    load as the checkpoints they are (issue 31)."""
    shutil.copy(DEMO_MODELS / "student.pth", tmp_path / name)
    if neighbour:
        (tmp_path / neighbour).write_text('{"not": "closed"')
    assert main(["info", str(tmp_path / name)]) == 0
    assert "state_dict" in capsys.readouterr().out
