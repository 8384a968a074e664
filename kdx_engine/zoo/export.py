"""Writing a zoo model in each format the loader reads, each with its ``.kdx.json`` sidecar."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from kdx_engine.atomic_files import atomic_write_bytes
from kdx_engine.models.preprocessing import Preprocessing, write_sidecar


def save_state_dict(state_dict: dict[str, torch.Tensor], path: Path, preprocessing: Preprocessing) -> Path:
    """A bare state_dict (tensors only, loads with ``weights_only=True``) and its sidecar."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in state_dict.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    write_sidecar(path, preprocessing)
    return path


def save_torchscript(model: nn.Module, path: Path, preprocessing: Preprocessing) -> Path:
    """``torch.jit.trace`` of the model in eval mode on one input of the preset's size."""
    model = model.eval()
    example = torch.zeros(1, 3, preprocessing.input_size, preprocessing.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and jit.save deprecation warnings
        traced = torch.jit.trace(model, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    write_sidecar(path, preprocessing)
    return path


def save_onnx(model: nn.Module, path: Path, preprocessing: Preprocessing) -> Path:
    """ONNX (TorchScript-based exporter, opset 17) with a dynamic batch; input ``input``, output
    ``logits``; module names kept in node names."""
    model = model.eval()
    example = torch.zeros(1, 3, preprocessing.input_size, preprocessing.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    atomic_write_bytes(path, buffer.getvalue())
    write_sidecar(path, preprocessing)
    return path
