"""The scan on a real local Ray cluster (ray.init(num_cpus=2), no mock) equals the in-process scan, row
by row and map by map, to 1e-6."""
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from kdx_engine.bundled import DEMO_DATASET, DEMO_MODELS
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan, read_map, run_scan
from kdx_engine.zoo import write_demo_dataset

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
    a = {r["path"]: r for r in pq.read_table(tmp_path / "local" / "scan.parquet").to_pylist()}
    b = {r["path"]: r for r in pq.read_table(tmp_path / "ray" / "scan.parquet").to_pylist()}
    assert a.keys() == b.keys()
    for path, row in a.items():
        other = b[path]
        assert row.keys() == other.keys()
        for key, value in row.items():
            if key in ("maps_shard", "maps_offset"):
                continue
            if isinstance(value, float) and not math.isnan(value):
                assert other[key] == pytest.approx(value, abs=1e-6), (path, key)
            elif isinstance(value, float):
                assert math.isnan(other[key]), (path, key)
            else:
                assert other[key] == value, (path, key)
        if row["error"] is None:
            for key in ("gradcam_teacher", "gradcam_student", "gradcam_base", "unicam_distilled", "unicam_residual"):
                assert np.allclose(read_map(tmp_path / "ray", other, key), read_map(tmp_path / "local", row, key),
                                   atol=1e-6, equal_nan=True), (path, key)
    manifest = (tmp_path / "ray" / "manifest.json").read_text()
    assert '"name": "ray"' in manifest and '"complete": true' in manifest
