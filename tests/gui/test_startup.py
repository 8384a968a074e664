"""Start-up: the window module imports no torch, and ``main.py FILES`` paints the window before the
engine has been imported, then shows the first result for the given model and images."""
import json
import os
import subprocess
import sys
from pathlib import Path
from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]


def run(args, config_home, timeout=180):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(config_home)}  # own QSettings
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_window_modules_import_no_torch(tmp_path):
    done = run(["-c", "import sys, kdx_gui.app, kdx_gui.main_window; print(sorted("
                      "m for m in ('torch', 'kdx_gui.state.analysis', 'kdx_engine.models') if m in sys.modules))"],
               tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_main_paints_before_the_engine_is_imported_and_opens_the_given_files(model_files, image_tree, tmp_path):
    done = run(["main.py", "--startup-report", model_files["teacher"], model_files["student"], str(image_tree)],
               tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["engine_ready_at_first_paint"] is False
    assert 0 < report["first_paint_s"] < report["engine_ready_s"] < report["first_result_s"]
