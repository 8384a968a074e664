"""kdx scan: options checked before anything is loaded or written; the table, CSV, shards and manifest;
a second run resumes; unreadable images make the exit code 2 and are named in the table."""
import json

import pyarrow.parquet as pq
import pytest

from kdx_engine.bundled import DEMO_MODELS
from kdx_engine.cli import main
from kdx_engine.zoo import write_demo_dataset

MODELS = ["--teacher", str(DEMO_MODELS / "teacher.pth"), "--student", str(DEMO_MODELS / "student.pth")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("cli") / "data", n=6, split="test")


@pytest.mark.parametrize("option, message", [
    (["--methods", "gradcam,nope"], "--methods"), (["--top-k", "0"], "--top-k"),
    (["--faithfulness-steps", "-1"], "--faithfulness-steps"), (["--batch-size", "0"], "--batch-size"),
    (["--num-cpus", "2"], "--num-cpus"), (["--unicam", "--n", "3"], "--n 3"),
])
def test_bad_options_exit_2_before_anything_is_written(dataset, tmp_path, capsys, option, message):
    out = tmp_path / "scan"
    assert main(["scan", str(dataset), *MODELS, "--out", str(out), *option]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_scan_writes_table_csv_maps_and_manifest_and_resumes(dataset, tmp_path, capsys):
    out = tmp_path / "scan"
    args = ["scan", str(dataset), *MODELS, "--out", str(out), "--faithfulness-steps", "2", "--top-k", "2"]
    assert main(args) == 0
    assert "6 row(s)" in capsys.readouterr().out
    table = pq.read_table(out / "scan.parquet")
    assert table.num_rows == 6 and "teacher_top2_prob" in table.column_names and "base_predicted" not in table.column_names
    assert (out / "scan.csv").read_text().count("\n") == 7
    assert len(list((out / "maps" / "gradcam_student").glob("*.npy"))) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["models"]["teacher"]["sha256"] and manifest["settings"]["top_k"] == 2
    assert manifest["versions"]["torch"]
    assert main(args) == 0
    assert "0 scanned now" in capsys.readouterr().out and "6 done before" in manifest_text(out)
    assert main([*args[:-2], "--top-k", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def manifest_text(out):
    data = json.loads((out / "manifest.json").read_text())
    return f"{data['skipped_as_done']} done before"


def test_unreadable_images_exit_2_with_their_rows(dataset, tmp_path, capsys):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "cross").mkdir()
    (bad / "cross" / "empty.png").write_bytes(b"")
    (bad / "cross" / "ok.png").write_bytes(next(dataset.rglob("00000.png")).read_bytes())
    assert main(["scan", str(bad), *MODELS, "--out", str(tmp_path / "scan"), "--faithfulness-steps", "0"]) == 2
    assert "1 image(s) could not be read" in capsys.readouterr().err
    rows = {r["path"]: r for r in pq.read_table(tmp_path / "scan" / "scan.parquet").to_pylist()}
    assert "empty file" in rows["cross/empty.png"]["error"] and rows["cross/ok.png"]["error"] is None
