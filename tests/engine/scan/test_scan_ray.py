"""The scan on a real local Ray cluster (ray.init(num_cpus=2), no mock) equals the in-process scan, row
by row and map by map, up to float32 rounding (scan_compare)."""
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kdx_engine.bundled import DEMO_DATASET, DEMO_MODELS
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan, run_scan
from kdx_engine.zoo import write_demo_dataset
from scan_compare import assert_same_rows

ray = pytest.importorskip("ray")

SETTINGS = ScanSettings(unicam=True, faithfulness_steps=3, reference_n=8)


# A real cluster (34 s on a lightly loaded machine: the cluster start and actor imports), in make test so CI
# runs the Ray path.
def test_ray_scan_equals_the_in_process_scan(tmp_path):
    from kdx_engine.scan.ray_engine import run_scan_on_ray

    dataset = write_demo_dataset(tmp_path / "data", n=8, split="test")
    (dataset / "cross" / "broken.png").write_bytes(b"\x89PNG truncated")
    spec = ScanModels({role: str(DEMO_MODELS / f"{role}.pth") for role in ("teacher", "student", "base")})
    models = spec.load()
    local = run_scan(prepare_scan(dataset, tmp_path / "local", SETTINGS, models, reference_folder=DEMO_DATASET),
                     models, batch_size=4)
    job = prepare_scan(dataset, tmp_path / "ray", SETTINGS, models, reference_folder=DEMO_DATASET)
    on_ray = run_scan_on_ray(job, spec, models, num_cpus=2, batch_size=4)
    assert on_ray.engine == "ray" and on_ray.rows == local.rows == 9 and on_ray.unreadable == 1
    _assert_same_scans(tmp_path / "local", tmp_path / "ray")


def _assert_same_scans(local, on_ray):
    """Ray's actors run their own batches with their own thread count: equal up to float32 rounding."""
    a = {r["path"]: r for r in pq.read_table(local / "scan.parquet").to_pylist()}
    b = {r["path"]: r for r in pq.read_table(on_ray / "scan.parquet").to_pylist()}
    assert a.keys() == b.keys()
    for path, row in a.items():
        assert_same_rows(local, row, on_ray, b[path], SETTINGS.faithfulness_steps)
    manifest = (on_ray / "manifest.json").read_text()
    assert '"name": "ray"' in manifest and '"complete": true' in manifest


@pytest.mark.slow
def test_kdx_scan_on_an_existing_cluster_by_its_address(tmp_path):
    """``kdx scan --ray ADDRESS``: a head node started with ``ray start`` (as a user's cluster is), joined
    by its address; the rows equal the in-process scan's."""
    import os
    import shutil
    import socket
    import subprocess

    from kdx_engine.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        dataset = write_demo_dataset(tmp_path / "data", n=6, split="test")
        models = [f"--{role}={DEMO_MODELS / f'{role}.pth'}" for role in ("teacher", "student")]
        common = [str(dataset), *models, "--faithfulness-steps", "2", "--batch-size", "3"]
        assert main(["scan", *common, "--out", str(tmp_path / "local")]) == 0
        # Such a cluster asks for its token (Ray >= 2.59), which a driver sends under RAY_AUTH_MODE=token, read
        # when Ray is imported: so kdx runs in its own process here, as a user runs it
        joined = subprocess.run([sys.executable, "-c", "import sys; from kdx_engine.cli import main; "
                                 "sys.exit(main(sys.argv[1:]))", "scan", *common, "--out", str(tmp_path / "ray"),
                                 "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "RAY_AUTH_MODE": "token"})
        assert joined.returncode == 0, joined.stderr[-2000:]
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
    _assert_same_scans(tmp_path / "local", tmp_path / "ray")
    assert f'"address": "127.0.0.1:{port}"' in (tmp_path / "ray" / "manifest.json").read_text()
