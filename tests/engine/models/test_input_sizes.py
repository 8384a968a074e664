"""Input sizes a file does not state (issue 24): −1 and symbolic ONNX dimensions are dynamic; a model
without a sidecar that fails at the fallback size runs at the first common size it takes, and a
failure keeps the model's own cause."""
from __future__ import annotations

import contextlib
import io
import warnings

import onnx
import pytest
import torch
from torch import nn

from kdx_engine.models import ModelLoadError, load_model
from kdx_engine.models.loading import COMMON_SIZES, failure_cause

from onnx_exports import export_onnx


def _flatten_net(size: int, classes: int = 10) -> nn.Module:
    """A CIFAR-style net whose Linear fixes the input size (``size`` px, 8 channels at size/2)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * (size // 2) ** 2, classes)).eval()


def _traced(module: nn.Module, path, size: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3, size, size)), str(path))
    return path


def _with_dims(path, dims: list, target=None):
    """The ONNX file with its input's dimensions rewritten (ints as dim_value, strings as dim_param)."""
    model = onnx.load(str(path))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, dims):
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.ClearField("dim_param")
            dim.dim_value = value
    onnx.save(model, str(target or path))
    return target or path


@pytest.mark.parametrize("batch", [-1, "batch_size"])
def test_onnx_batch_written_as_minus_one_or_a_symbol_is_dynamic(batch, tmp_path):
    module = _flatten_net(32)
    path = _with_dims(export_onnx(module, tmp_path / "net.onnx", 32, "legacy"), [batch, 3, 32, 32])
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == (-1 if batch == -1 else 0)
    backend = load_model(path)
    assert backend.graph.fixed_batch is None
    assert not any("fixed batch" in note for note in backend.info.notes)
    assert backend.info.preprocessing.input_size == 32  # the graph's own size
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(backend.logits(x), module(x), rtol=1e-4, atol=1e-5)


def test_onnx_size_written_as_minus_one_is_dynamic(tmp_path):
    """A fully convolutional net whose H and W are −1: no fixed size is read from the graph."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 40, 40),), str(tmp_path / "fcn.onnx"), dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}})
    path = _with_dims(tmp_path / "fcn.onnx", [-1, 3, -1, -1])
    backend = load_model(path)
    assert backend.graph.fixed_size is None
    assert backend.info.preprocessing.input_size == 224  # the fallback: the file says no size
    assert backend.logits(torch.randn(2, 3, 50, 50)).shape == (2, 5)


def test_torchscript_without_sidecar_runs_at_the_first_common_size_that_works(tmp_path):
    module = _flatten_net(32)
    backend = load_model(_traced(module, tmp_path / "cifar.pt", 32))
    assert backend.info.preprocessing.input_size == 32
    assert backend.info.preprocessing.resize is None  # small inputs are resized straight to the size
    note = next(note for note in backend.info.notes if "common sizes" in note)
    assert "failed on a 224×224 input" in note and "input size 32 used" in note
    assert "mat1 and mat2 shapes cannot be multiplied" in note  # the cause, not the interpreter's first line
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(backend.logits(x), module(x))


def test_common_size_search_is_tried_in_order(tmp_path):
    backend = load_model(_traced(_flatten_net(96), tmp_path / "stl.pt", 96))
    assert backend.info.preprocessing.input_size == 96
    assert backend.info.preprocessing.resize == int(96 / 0.875)  # the ImageNet-style crop at 96 px and up
    assert COMMON_SIZES.index(96) > COMMON_SIZES.index(64)


def test_a_model_that_runs_at_no_common_size_keeps_its_cause(tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        load_model(_traced(_flatten_net(40), tmp_path / "odd.pt", 40))
    message = str(caught.value)
    assert message.startswith("odd.pt: model failed on a 224×224 input (mat1 and mat2 shapes cannot be multiplied (1x")
    assert "none of the common sizes (32, 64, 96, 128, 224, 256, 299, 384)" in message
    assert "--input-size" in message


def test_sidecar_size_is_not_searched(tmp_path):
    """A size the user set is kept: its failure is reported, never replaced by a guess."""
    from kdx_engine.models.preprocessing import Preprocessing, write_sidecar

    path = _traced(_flatten_net(32), tmp_path / "cifar.pt", 32)
    write_sidecar(path, Preprocessing(input_size=64, source="sidecar"))
    with pytest.raises(ModelLoadError, match=r"failed on a 64×64 input \(mat1 and mat2 shapes cannot be multiplied"):
        load_model(path)


def test_failure_cause_reads_the_torchscript_interpreter_error():
    error = RuntimeError("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript, "
                         "serialized code (most recent call last):\n  File \"code/x.py\", line 3\n    _0 = torch.linear(x)\n"
                         "\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (1x3136 and 64x10)\n")
    assert failure_cause(error) == "mat1 and mat2 shapes cannot be multiplied (1x3136 and 64x10)"
    assert failure_cause(ValueError("first line.\nsecond")) == "first line"
    assert len(failure_cause(ValueError("x" * 1000))) == 300
