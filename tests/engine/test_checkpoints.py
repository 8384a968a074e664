"""Checkpoint reading shared by the model loader and VAM's views: weights only, safetensors checked,
and no dependency on the rest of the engine."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from kdx_engine.checkpoints import ModelLoadError, UntrustedPickleError, checkpoint_state_dict
from kdx_engine.vam import vam_checkpoint_state
from kdx_engine.vam.demo_arch import demo_resnet_small_vam


def test_checkpoints_import_nothing_else_of_the_engine_but_its_helpers():
    done = subprocess.run([sys.executable, "-c", "import sys, kdx_engine.checkpoints\n"
                           "print(sorted(m for m in sys.modules if m.startswith('kdx_engine')))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("['kdx_engine', 'kdx_engine.checkpoints', 'kdx_engine.file_reading', "
                                   "'kdx_engine.messages', 'kdx_engine.tensor_unpickler']")


def test_state_dict_is_read_from_a_training_checkpoint_with_its_namespace(tmp_path):
    state = {"conv.weight": torch.ones(2, 3)}
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {f"module.{k}": v for k, v in state.items()}},
               tmp_path / "epoch_3.pth")
    assert checkpoint_state_dict(tmp_path / "epoch_3.pth").keys() == state.keys()


def test_vam_checkpoints_are_read_from_safetensors_too(tmp_path):
    state = demo_resnet_small_vam(4).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "vam.safetensors")
    read = vam_checkpoint_state(tmp_path / "vam.safetensors")
    assert read.keys() == state.keys()
    assert all(torch.equal(read[k], state[k]) for k in state)


def test_vam_checkpoint_that_would_run_code_is_refused(tmp_path):
    torch.save({"state_dict": demo_resnet_small_vam(4)}, tmp_path / "module.pth")
    with pytest.raises(UntrustedPickleError, match="module.pth.*run code"):
        vam_checkpoint_state(tmp_path / "module.pth")


def test_a_bad_safetensors_header_is_refused_before_reading(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes((10 ** 9).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelLoadError, match="bad.safetensors: safetensors header length"):
        checkpoint_state_dict(tmp_path / "bad.safetensors")
