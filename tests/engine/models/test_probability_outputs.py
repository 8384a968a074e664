"""Models whose output is probabilities (issue 24): explained on their logits in every format.

A tiny CNN is trained on a synthetic task until its softmax saturates (random weights would hide the
problem: an unsaturated softmax gives maps close to the logits'); the same weights are saved with a final
softmax in each format, and each must give the logits model's Grad-CAM maps.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import backend_for
from kdx_engine.cams import TargetRule, cam_method
from kdx_engine.models import load_model
from kdx_engine.models.probabilities import (FROM_LOG, FROM_OUTPUT, FROM_SOFTMAX_INPUT, LOG_PROBABILITIES, LOGITS,
                                             PROBABILITIES, values_kind)
from kdx_engine.models.preprocessing import Preprocessing, write_sidecar

SIZE, CLASSES = 16, 3
EPS32 = float(np.finfo(np.float32).eps)
SAME_PATH_RTOL = 64 * EPS32  # the same ops on the same weights: only summation order may differ
CROSS_PATH_RTOL = 1024 * EPS32  # PyTorch vs onnxruntime kernels (see tests/float32_tolerances.py's reasoning)


def _trunk() -> "OrderedDict[str, nn.Module]":
    return OrderedDict(features=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                              nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
                       pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(8, CLASSES))


def _images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright 4×4 square somewhere, in one colour channel: the channel is the class."""
    x = torch.randn(n, 3, SIZE, SIZE, generator=generator) * 0.3
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    corners = torch.randint(0, SIZE - 4, (n, 2), generator=generator)
    for i in range(n):
        row, column = int(corners[i, 0]), int(corners[i, 1])
        x[i, int(labels[i]), row:row + 4, column:column + 4] += 2.5
    return x, labels


@pytest.fixture(scope="module")
def trained():
    """The trained trunk (logits) and test images on which its softmax saturates."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(_trunk())
    params = list(net.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(60):  # SGD with momentum by hand: torch.optim's first use imports torch._dynamo (seconds)
        x, y = _images(16, generator)
        grads = torch.autograd.grad(F.cross_entropy(net(x), y), params)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads):
                v.mul_(0.9).add_(g)
                p.sub_(0.1 * v)
    net.eval()
    with torch.no_grad():  # the logits' scale a long training run reaches (their norm keeps growing): sharper
        net.fc.weight.mul_(8)
        net.fc.bias.mul_(8)
    x, y = _images(6, generator)
    with torch.no_grad():
        logits = net(x)
    assert int((logits.argmax(1) == y).sum()) >= 4  # trained: it finds the square
    assert int((logits.softmax(1).max(1).values > 1 - 1e-6).sum()) >= 4  # saturated on most: p_c rounds to ~1
    return net, x


class _FunctionalSoftmax(nn.Module):
    """The trunk with ``F.softmax`` in its forward, not a module."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.features, self.pool, self.fc = net.features, net.pool, net.fc

    def forward(self, x):
        return F.softmax(self.fc(self.pool(self.features(x)).flatten(1)), dim=1)


class _FunctionalLogSoftmax(_FunctionalSoftmax):
    def forward(self, x):
        return F.log_softmax(self.fc(self.pool(self.features(x)).flatten(1)), dim=1)


class _HandWrittenSoftmax(nn.Module):
    """Probabilities from exp/sum: no softmax op whose input could be taken."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.features, self.pool, self.fc = net.features, net.pool, net.fc

    def forward(self, x):
        e = self.fc(self.pool(self.features(x)).flatten(1)).exp()
        return e / e.sum(1, keepdim=True)


def _with_softmax(net: nn.Sequential, log: bool = False) -> nn.Sequential:
    return nn.Sequential(OrderedDict([*net.named_children(), ("softmax", nn.LogSoftmax(1) if log else nn.Softmax(1))]))


def _save(module: nn.Module, path, form: str, x: torch.Tensor):
    """``module`` saved as ``form``: pickle (a full module), traced/scripted TorchScript, .pt2, ONNX."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if form == "pickle":
            torch.save(module, path)
        elif form == "traced":
            torch.jit.save(torch.jit.trace(module, x[:1]), str(path))
        elif form == "scripted":
            torch.jit.save(torch.jit.script(module), str(path))
        elif form == "pt2":
            batch = torch.export.Dim("batch", min=1, max=64)
            torch.export.save(torch.export.export(module, (x[:2],), dynamic_shapes=({0: batch},)), str(path))
        elif form == "onnx":
            torch.onnx.export(module, (x[:1],), str(path), dynamo=False, input_names=["input"], output_names=["out"],
                              dynamic_axes={"input": {0: "batch"}, "out": {0: "batch"}})
    write_sidecar(path, Preprocessing(input_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    return path


def _gradcam(backend, x) -> np.ndarray:
    result = cam_method("gradcam")(backend, layer="features")(x, TargetRule("predicted"))
    return result.low_res.numpy()


SUFFIX = {"pickle": ".pth", "traced": ".pt", "scripted": ".pt", "pt2": ".pt2", "onnx": ".onnx"}
CASES = {  # name: (form, model builder, output kind, where the softmax is named)
    "pickled nn.Softmax": ("pickle", lambda net: _with_softmax(net), PROBABILITIES, "softmax call"),
    "traced nn.Softmax": ("traced", lambda net: _with_softmax(net), PROBABILITIES, "(Softmax)"),
    "traced F.log_softmax": ("traced", lambda net: _FunctionalLogSoftmax(net), LOG_PROBABILITIES,
                             "aten::log_softmax"),
    "scripted F.softmax": ("scripted", lambda net: _FunctionalSoftmax(net), PROBABILITIES, "F.softmax"),
    "pt2 F.softmax": ("pt2", lambda net: _FunctionalSoftmax(net), PROBABILITIES, "softmax"),
    "onnx Softmax": ("onnx", lambda net: _with_softmax(net), PROBABILITIES, "(Softmax)"),
    "onnx LogSoftmax": ("onnx", lambda net: _with_softmax(net, log=True), LOG_PROBABILITIES, "(LogSoftmax)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_probability_model_maps_equal_the_logits_models_maps(case, trained, tmp_path):
    form, build, kind, where = CASES[case]
    net, x = trained
    reference = load_model(_save(net, tmp_path / f"logits{SUFFIX[form]}", form, x), trust_pickle=True)
    model = load_model(_save(build(net).eval(), tmp_path / f"probs{SUFFIX[form]}", form, x), trust_pickle=True)

    assert reference.info.output.kind == LOGITS  # never misdetected on the logits model
    assert (model.info.output.kind, model.info.output.logits) == (kind, FROM_SOFTMAX_INPUT)
    assert where in model.info.output.where
    assert any(note.startswith(f"output: {kind}") for note in model.info.notes)
    expected, got = _gradcam(reference, x), _gradcam(model, x)
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=SAME_PATH_RTOL * np.abs(expected).max())
    with torch.no_grad():
        in_memory = _gradcam_in_memory(net, x)
    np.testing.assert_allclose(got, in_memory, rtol=0, atol=CROSS_PATH_RTOL * np.abs(in_memory).max())


def _gradcam_in_memory(net, x) -> np.ndarray:
    return _gradcam(backend_for(net, CLASSES, input_size=SIZE), x)


def test_maps_through_the_softmax_would_be_wrong(trained):
    """The test has teeth: Grad-CAM taken through the saturated softmax is far from the logits' maps."""
    net, x = trained
    through = _gradcam(backend_for(_with_softmax(net).eval(), CLASSES, input_size=SIZE), x)
    logits = _gradcam_in_memory(net, x)
    scale = np.abs(logits).max()
    assert np.abs(through).max() < 1e-3 * scale or np.abs(through - logits).max() > 0.1 * scale


def test_hand_written_softmax_is_named_and_explained_on_its_log(trained, tmp_path):
    net, x = trained
    model = load_model(_save(_HandWrittenSoftmax(net).eval(), tmp_path / "probs.pt", "scripted", x))
    assert (model.info.output.kind, model.info.output.logits) == (PROBABILITIES, FROM_LOG)
    assert any("no softmax op found" in note for note in model.info.notes)
    with torch.no_grad():
        expected = net(x).log_softmax(1)
    kept = expected > -80  # float32 probabilities below ~1e-35 underflow: their log is clamped, not recovered
    np.testing.assert_allclose(model.logits(x)[kept].numpy(), expected[kept].numpy(), atol=1e-4)


def test_log_probabilities_without_an_op_are_used_as_they_are(trained, tmp_path):
    net, x = trained

    class LogSoftmaxByHand(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            z = self.net(x)
            return z - torch.logsumexp(z, 1, keepdim=True)

    model = load_model(_save(LogSoftmaxByHand().eval(), tmp_path / "logp.pt", "scripted", x))
    assert (model.info.output.kind, model.info.output.logits) == (LOG_PROBABILITIES, FROM_OUTPUT)


def test_detection_needs_every_probe_row():
    rows = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    assert values_kind(rows) == PROBABILITIES
    assert values_kind(rows.log()) == LOG_PROBABILITIES
    assert values_kind(torch.tensor([[0.2, 0.3, 0.5], [0.2, 0.3, 0.6]])) == LOGITS  # one row sums to 1.1
    assert values_kind(torch.tensor([[1.0], [1.0]])) == LOGITS  # one class: nothing to normalise
    assert values_kind(torch.tensor([[0.5, 0.6, -0.1]])) == LOGITS  # negative value
    assert values_kind(torch.tensor([[float("nan"), 1.0]])) == LOGITS
