"""Dataset scan speed: images per second of `kdx scan` with Grad-CAM only (no faithfulness, no UniCAM)
in process, on a local Ray cluster of the same cores, and the floor: the same images read, preprocessed
and passed forward through every model (Teacher, Student, Base) with no explanation.

    python benchmarks/scan_speed.py [--n 1000] [--batch-size 64] [--cpus N]

Prints images/s of each and the ratios Ray / in-process and in-process / floor (targets: ≤ 1.3 and
≤ 1.5) taken in one run: after a warm-up of each, three floor and three in-process runs alternate and
the best of each counts. The Ray time is the scan on a running cluster (as with ``--ray ADDRESS``): its
actors' start and model loading count, the cluster's own start (a few seconds, once) is printed beside it.
The images are the demo's synthetic test scenes (48×48, with masks), written to a temporary folder; the
models are the bundled demo zoo.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from kdx_engine.bundled import DEMO_MODELS
from kdx_engine.data import ImageFolderDataset, to_batch
from kdx_engine.data.image_stream import image_batches
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan, run_scan
from kdx_engine.zoo import write_demo_dataset

SETTINGS = ScanSettings(methods=("gradcam",), faithfulness_steps=0, unicam=False)


def floor(models, dataset: Path, batch_size: int) -> float:
    """Seconds to read, preprocess and run every model forward on every image (no gradients)."""
    folder = ImageFolderDataset(dataset)
    start = time.perf_counter()
    with torch.no_grad():
        for items in image_batches(folder.paths, folder.labels, batch_size):
            images = [item.image for item in items if item.image is not None]
            for model in models.values():
                model.backend.logits(to_batch(images, model.backend.info.preprocessing))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.cpus)
    spec = ScanModels({role: str(DEMO_MODELS / f"{role}.pth") for role in ("teacher", "student", "base")})
    models = spec.load()
    with tempfile.TemporaryDirectory(prefix="kdx-scan-bench-") as tmp:
        dataset = write_demo_dataset(Path(tmp) / "data", n=args.n, split="test")
        def scan(name: str) -> float:
            job = prepare_scan(dataset, Path(tmp) / name, SETTINGS, models)
            return run_scan(job, models, batch_size=args.batch_size).seconds

        floor(models, dataset, args.batch_size), scan("warm-up")  # file cache, allocator, lazy imports
        t_floor, t_local = [], []
        for run in range(3):  # alternating, so a drift in the machine's speed touches both alike
            t_floor.append(floor(models, dataset, args.batch_size))
            t_local.append(scan(f"local{run}"))
        t_floor, t_local = min(t_floor), min(t_local)
        print(f"{args.n} demo images (48×48, T/S/B), batch {args.batch_size}, {args.cpus} CPU(s)")
        print(f"floor (read + preprocess + forward of T, S, B): {args.n / t_floor:8.1f} images/s")
        print(f"in process, Grad-CAM only:                       {args.n / t_local:8.1f} images/s")
        print(f"in process / floor (time): {t_local / t_floor:.2f}  (target ≤ 1.5)")
        if not args.skip_ray:
            import ray

            from kdx_engine.scan.ray_engine import run_scan_on_ray

            start = time.perf_counter()
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            t_start = time.perf_counter() - start
            try:
                job = prepare_scan(dataset, Path(tmp) / "ray", SETTINGS, models)
                summary = run_scan_on_ray(job, spec, models, batch_size=args.batch_size)
            finally:
                ray.shutdown()
            t_ray = summary.seconds  # on the running cluster: actors start, load the models, scan, table written
            print(f"Ray, local cluster of {args.cpus} CPU(s):             {args.n / t_ray:8.1f} images/s "
                  f"({t_ray:.1f} s; the cluster's start before it {t_start:.1f} s)")
            print(f"Ray / in process (time): {t_ray / t_local:.2f}  (target ≤ 1.3); "
                  f"with the cluster's start: {(t_ray + t_start) / t_local:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
