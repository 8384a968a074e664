"""Memory of a dataset scan against the number of images: peak RSS of `kdx scan` (Grad-CAM, faithfulness
off, maps saved) on 1,000 and on 20,000 generated images (the demo's synthetic scenes, 48×48, masks).

    python benchmarks/scan_memory.py [--sizes 1000,20000] [--threads 1]

Each scan runs in a fresh process; its peak RSS (ru_maxrss) and the RSS sampled every second are
printed, with the ratio of the largest to the smallest scan's peak (flat memory: ≈ 1).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, threading, time, torch
torch.set_num_threads(int(sys.argv[3]))
from kdx_engine.bundled import DEMO_MODELS
from kdx_engine.scan import ScanModels, ScanSettings, prepare_scan, run_scan
samples = []
def sample():
    while True:
        with open("/proc/self/statm") as f:
            samples.append(int(f.read().split()[1]) * 4096 / 2**20)
        time.sleep(1.0)
threading.Thread(target=sample, daemon=True).start()
models = ScanModels({r: str(DEMO_MODELS / f"{r}.pth") for r in ("teacher", "student", "base")}).load()
settings = ScanSettings(faithfulness_steps=0)
start = time.perf_counter()
summary = run_scan(prepare_scan(sys.argv[1], sys.argv[2], settings, models), models, batch_size=64)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
third = max(1, len(samples) // 3)
print(json.dumps({"rows": summary.rows, "seconds": time.perf_counter() - start, "peak_mib": peak,
                  "rss_first_third_mib": max(samples[:third]), "rss_last_third_mib": max(samples[-third:])}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from kdx_engine.zoo import write_demo_dataset

    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="kdx-scan-mem-") as tmp:
        for n in sizes:
            dataset = write_demo_dataset(Path(tmp) / f"data{n}", n=n, split="test")
            out = subprocess.run([sys.executable, "-c", CHILD, str(dataset), str(Path(tmp) / f"scan{n}"),
                                  str(args.threads)], capture_output=True, text=True, check=True)
            results[n] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[n]
            print(f"{n:6d} images: peak RSS {r['peak_mib']:.0f} MiB (sampled: first third {r['rss_first_third_mib']:.0f}, "
                  f"last third {r['rss_last_third_mib']:.0f} MiB), {r['rows']} rows in {r['seconds']:.0f} s", flush=True)
    low, high = results[min(sizes)]["peak_mib"], results[max(sizes)]["peak_mib"]
    print(f"peak RSS {max(sizes)} / {min(sizes)} images: {high / low:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
