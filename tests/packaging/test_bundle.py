"""The desktop bundle (slow: PyInstaller collects torch whole; many minutes on 2 cores). Builds
packaging/kdx.spec into a temporary folder, then runs the bundle with a bare environment (no venv on
PATH, no PYTHONPATH): ``kdx info`` on a bundled model, ``kdx explain`` on a bundled sample, and the window
offscreen until the first demo result, whose start-up time it prints.

``KDX_TEST_BUNDLE=dist/kdx`` runs the same checks on a bundle already built by ``make package``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdx_engine import bundled
from kdx_engine.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# only ever dlopen'ed for work on a GPU: the CPU bundle leaves them out (packaging/kdx.spec)
GPU_ONLY = ("libcudnn_engines_precompiled.so.9", "libcudnn_adv.so.9", "libcusolver.so.12", "libtorch_cuda_linalg.so",
            "libnvrtc-builtins.so.13.0")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    given = os.environ.get("KDX_TEST_BUNDLE")
    if given:
        return Path(given).resolve()
    work = tmp_path_factory.mktemp("bundle")
    done = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                           "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
                           str(ROOT / "packaging" / "kdx.spec")], cwd=work, capture_output=True, text=True,
                          timeout=5400)
    assert done.returncode == 0, done.stderr[-4000:]
    return work / "dist" / "kdx"


def _bare_env(home: Path, **extra) -> dict:
    """What a desktop session would pass: no venv, no Python paths, a fresh home."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "LANG": os.environ.get("LANG", "C.UTF-8"), **extra}


def _run(command: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_bundle_carries_the_demo_the_launchers_and_the_desktop_entry(bundle):
    internal = bundle / "_internal"
    assert (bundle / "kdx").is_file() and (bundle / "kdx-gui").is_file()
    for path in bundled.RESOURCES.rglob("*"):
        if path.is_file():
            assert (internal / "kdx_engine" / "resources" / path.relative_to(bundled.RESOURCES)).is_file(), path
    desktop = (bundle / "kdx.desktop").read_text()
    assert "Exec=kdx-gui %F" in desktop and "Icon=kdx" in desktop
    assert (bundle / "icons" / "kdx.svg").is_file() and (bundle / "icons" / "kdx_256.png").is_file()
    assert (bundle / "install_desktop_entry.sh").is_file()
    names = {p.name for p in internal.rglob("*.so*")}
    assert "libtorch_cpu.so" in names and not set(GPU_ONLY) & names
    assert [p for p in internal.rglob("*") if p.is_symlink() and not p.exists()] == []  # no link left dangling
    assert not (internal / "triton").exists()
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbundle: {size / 1e6:.0f} MB in {bundle}")


def test_kdx_info_and_explain_run_headless_from_the_bundle(bundle, tmp_path):
    resources = bundle / "_internal" / "kdx_engine" / "resources"
    env = _bare_env(tmp_path)
    info = json.loads(_run([bundle / "kdx", "info", resources / "models" / "student.pth", "--json"], tmp_path,
                           env).stdout)
    assert info["architecture"] == "demo_resnet_small" and info["classes"] == ["circle", "square", "triangle", "cross"]
    assert info["preprocessing_source"] == "sidecar"
    sample = sorted(p for p in (resources / "samples" / "cross").glob("*.png") if ".mask" not in p.name)[0]
    _run([bundle / "kdx", "explain", "--method", "gradcam", "--model", resources / "models" / "student.pth", sample,
          "--out", tmp_path / "bundle_maps"], tmp_path, env)
    manifest = json.loads((tmp_path / "bundle_maps" / "manifest.json").read_text())
    assert manifest["images"][0]["target_name"] == "cross"
    assert main(["explain", "--method", "gradcam", "--model", str(bundled.DEMO_MODELS / "student.pth"),
                 str(bundled.DEMO_SAMPLES / "cross" / sample.name), "--out", str(tmp_path / "checkout_maps")]) == 0
    name = manifest["images"][0]["map"]
    np.testing.assert_allclose(np.load(tmp_path / "bundle_maps" / name), np.load(tmp_path / "checkout_maps" / name),
                               atol=1e-6)


def test_the_window_opens_on_the_demo_and_closes_after_the_first_result(bundle, tmp_path):
    launched = time.time()
    done = _run([bundle / "kdx-gui", "--startup-report", "--size", "1400x900"], tmp_path,
                _bare_env(tmp_path, QT_QPA_PLATFORM="offscreen"), timeout=600)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["demo"] == "loaded"
    offset = report["started"] - launched  # the bootloader and Python's start before main() runs
    first_paint, first_result = report["first_paint_s"] + offset, report["first_result_s"] + offset
    assert 0 < first_paint <= first_result
    print(f"\nbundle start-up: first paint {first_paint:.2f} s, first demo result {first_result:.2f} s")
