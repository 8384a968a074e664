"""Export helpers for the ONNX tests: a module saved by the legacy or the default (dynamo) exporter."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import pytest
import torch

EXPORTERS = ("legacy", "dynamo")


def export_onnx(module: torch.nn.Module, path: Path, size: int, exporter: str, dynamic_batch: bool = True) -> Path:
    """Write ``module`` to ``path`` (dynamo files keep their weights in ``<path>.data``)."""
    x = torch.randn(2 if dynamic_batch else 1, 3, size, size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes=axes)
        else:
            pytest.importorskip("onnxscript", reason="the default (dynamo) torch.onnx exporter needs onnxscript")
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=shapes, verbose=False)
    return path
