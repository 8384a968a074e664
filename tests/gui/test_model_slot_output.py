"""The model slot says what a model's output is (issue 24): logits, or probabilities explained on the
input of the final softmax."""
from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
from torch import nn

from kdx_engine.models import Preprocessing, write_sidecar
from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from dnd import drop_files
from gui_helpers import wait_idle


def _traced(path, softmax: bool):
    torch.manual_seed(0)
    layers = OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
                         flatten=nn.Flatten(), fc=nn.Linear(4, 4))
    if softmax:
        layers["softmax"] = nn.Softmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(nn.Sequential(layers).eval(), torch.zeros(1, 3, 16, 16)), str(path))
    write_sidecar(path, Preprocessing(input_size=16, class_names=("a", "b", "c", "d")))
    return path


def test_slot_shows_probabilities_explained_on_the_logits(window, qtbot, tmp_path):
    for role, softmax in (("teacher", False), ("student", True)):
        slot = window.slots[role]
        drop_files(slot, [str(_traced(tmp_path / f"{role}.pt", softmax))])
        wait_idle(qtbot, window)
    assert window.slots["teacher"].values["output"].text() == "logits"
    text = window.slots["student"].values["output"].text()
    assert text.startswith("probabilities (final softmax: softmax (Softmax))") and "the logits" in text
    assert window.slots["student"].values["input"].toolTip().startswith("sidecar student.pt.kdx.json")
