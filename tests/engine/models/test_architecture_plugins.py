"""The method packages register their demo architectures themselves: ``kdx_engine.models`` imports no
VAM or KDExplainer code, yet their checkpoints load from a fresh interpreter by fingerprint alone."""
from __future__ import annotations

import subprocess
import sys

import torch

from kdx_engine.hme import KDExplainerNet
from kdx_engine.vam.demo_arch import demo_resnet_small_vam

FRESH_LOAD = """
import sys
import kdx_engine.models
from kdx_engine.models import load_model
before = sorted(m for m in sys.modules if m.startswith(("kdx_engine.vam", "kdx_engine.hme")))
print("before", before)
for path in sys.argv[1:]:
    print("loaded", load_model(path).info.architecture)
"""


def _fresh_python(script: str, *args) -> list[str]:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_models_import_no_method_package_yet_load_their_checkpoints_in_a_fresh_interpreter(tmp_path):
    torch.save(demo_resnet_small_vam(4).state_dict(), tmp_path / "vam.pth")
    torch.save({"state_dict": KDExplainerNet(4).state_dict()}, tmp_path / "explainer.pth")
    lines = _fresh_python(FRESH_LOAD, tmp_path / "vam.pth", tmp_path / "explainer.pth")
    assert lines == ["before []", "loaded demo_resnet_small_vam", "loaded demo_kdexplainer"]


def test_every_plugin_architecture_is_listed(tmp_path):
    lines = _fresh_python("from kdx_engine.models import architecture_families\n"
                          "print(' '.join(s.name for s in architecture_families() if s.family == 'kdx_demo'))")
    assert lines == ["demo_kdexplainer demo_resnet_small demo_resnet_small_vam demo_resnet_wide"]
