"""The wheel carries the demo: built from a copy of the sources, installed into a fresh venv outside the
checkout (torch and the other dependencies reused from the running venv), then ``kdx info`` on a bundled
model, ``kdx explain`` on a bundled sample and ``kdx-gui`` on the demo, each run from another folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kdx_engine import bundled
from kdx_engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "kdx_engine", "kdx_gui")


def _run(command: list, cwd: Path, timeout: float = 180, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env={**clean, **env}, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{command[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel, make a venv without pip outside the checkout and install the wheel into it.

    The venv sees the running venv's site-packages through a plain path in a .pth file: a path line does not
    process that folder's own .pth files, so the editable install's finder (``__editable__…``), which would
    map ``kdx_engine`` back to the checkout, never runs there and the wheel's copy is the one imported."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:  # a copy, so no stale build/ folder of the checkout can leak into the wheel
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", work / "dist", source], cwd=work)
    wheel = next((work / "dist").glob("kdx-*.whl"))
    venv = work / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", venv], cwd=work)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=work).stdout.strip())
    (purelib / "_reuse_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=work)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "venv": venv, "python": python, "bin": venv / "bin", "elsewhere": elsewhere}


def test_the_wheel_carries_the_demo_and_the_launchers(installed):
    wheel = zipfile.ZipFile(installed["wheel"])
    names = set(wheel.namelist())
    shipped = {p.relative_to(bundled.RESOURCES.parents[1]).as_posix() for p in bundled.RESOURCES.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and shipped <= names  # every demo model, sidecar, checkpoint, sample and mask
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "kdx = kdx_engine.cli:main" in text and "kdx-gui = kdx_gui.__main__:main" in text
    where = _run([installed["python"], "-c", "import kdx_engine, kdx_gui\nfrom kdx_engine import bundled\n"
                  "print(kdx_engine.__file__); print(kdx_gui.__file__); print(bundled.DEMO_MODELS)"],
                 cwd=installed["elsewhere"]).stdout.split()
    for path in where:  # the installed copy, not the checkout
        assert Path(path).is_relative_to(installed["venv"]) and not Path(path).is_relative_to(ROOT), path


def test_kdx_info_on_a_bundled_model_from_another_folder(installed):
    models = _installed_resources(installed) / "models"
    done = _run([installed["bin"] / "kdx", "info", models / "student.pth", "--json"], cwd=installed["elsewhere"])
    info = json.loads(done.stdout)
    assert info["architecture"] == "demo_resnet_small" and info["num_classes"] == 4
    assert info["classes"] == ["circle", "square", "triangle", "cross"]
    assert info["preprocessing_source"] == "sidecar" and info["input_size"] == 48  # the .kdx.json shipped too


def test_kdx_explain_on_a_bundled_sample_matches_the_checkout(installed, tmp_path):
    resources = _installed_resources(installed)
    sample = sorted(p for p in (resources / "samples" / "cross").glob("*.png") if ".mask" not in p.name)[0]
    _run([installed["bin"] / "kdx", "explain", "--method", "gradcam", "--model", resources / "models" / "student.pth",
          sample, "--out", "maps"], cwd=installed["elsewhere"])
    out = installed["elsewhere"] / "maps"
    manifest = json.loads((out / "manifest.json").read_text())
    image = manifest["images"][0]
    assert image["target_name"] == "cross" and image["size"] == [48, 48]
    from_wheel = np.load(out / image["map"])
    # the same model and image through the checkout's engine, in this process
    checkout_sample = bundled.DEMO_SAMPLES / "cross" / sample.name
    assert main(["explain", "--method", "gradcam", "--model", str(bundled.DEMO_MODELS / "student.pth"),
                 str(checkout_sample), "--out", str(tmp_path / "maps")]) == 0
    from_checkout = np.load(tmp_path / "maps" / image["map"])
    assert from_wheel.shape == (48, 48) and np.nanmax(from_wheel) > 0
    np.testing.assert_allclose(from_wheel, from_checkout, atol=1e-6)


def test_kdx_gui_opens_the_window_on_the_demo_from_another_folder(installed, tmp_path):
    done = _run([installed["bin"] / "kdx-gui", "--startup-report", "--size", "1200x800"], cwd=installed["elsewhere"],
                timeout=300, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["demo"] == "loaded"
    assert 0 < report["first_paint_s"] <= report["first_result_s"]


def _installed_resources(installed) -> Path:
    path = Path(_run([installed["python"], "-c", "from kdx_engine import bundled; print(bundled.RESOURCES)"],
                     cwd=installed["elsewhere"]).stdout.strip())
    assert path.is_relative_to(installed["venv"])
    return path
