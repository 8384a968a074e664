"""Start-up time of the window: seconds from launching ``python main.py`` to the first paint of the
window, to the engine (torch) being imported in the background, and to the first demo result
(every demo model loaded and the first sample analysed). Each run is a fresh process.

    .venv/bin/python benchmarks/startup.py [--runs 3] [main.py arguments...]

Runs offscreen unless QT_QPA_PLATFORM is set. Without the built demo (resources/models), pass model
and image files to time those instead; otherwise only the first paint and the engine are timed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = (("first_paint_s", "first paint"), ("engine_ready_s", "engine imported"),
        ("first_result_s", "first result"))


def one_run(arguments: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as config_home:  # fresh settings: no remembered window state
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               "XDG_CONFIG_HOME": config_home}
        launched = time.time()
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--startup-report", *arguments], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"main.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    offset = report["started"] - launched  # interpreter start-up before main.py's first line
    return {key: report[key] + offset for key, _ in KEYS if report.get(key) is not None} | {"demo": report["demo"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args, rest = parser.parse_known_args()
    runs = [one_run(rest) for _ in range(args.runs)]
    print(f"start-up of main.py {' '.join(rest) or '(bundled demo)'}: {args.runs} fresh processes, "
          f"{os.cpu_count()} CPU cores, platform {os.environ.get('QT_QPA_PLATFORM', 'offscreen')}")
    if runs[0]["demo"] != "loaded":
        print(f"demo: {runs[0]['demo']}")
    for key, name in KEYS:
        values = [run[key] for run in runs if key in run]
        if values:
            print(f"  {name:>16}: median {statistics.median(values):6.2f} s  "
                  f"(runs: {', '.join(f'{v:.2f}' for v in values)})")
        else:
            print(f"  {name:>16}: not reached (nothing to analyse)")
    paint = statistics.median(run["first_paint_s"] for run in runs)
    engine = statistics.median(run["engine_ready_s"] for run in runs)
    print(f"  the window painted {engine - paint:.2f} s before torch and the engine had finished importing")


if __name__ == "__main__":
    main()
