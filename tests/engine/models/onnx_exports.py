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


def tiny_onnx(path: Path, head: str = "plain", size: int = 8, classes: int = 5, seed: int = 0) -> Path:
    """A hand-built ONNX classifier: Conv (``conv``) → Relu (``relu``) → [head op] → GlobalAveragePool →
    Flatten → Gemm. ``head``: ``"plain"`` (nothing more), ``"loop"`` (a Loop applying Relu twice, which
    onnx-ad cannot differentiate into a runnable graph) or ``"contrib"`` (``com.microsoft.FastGelu``)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(np.zeros(4, np.float32), "B"),
             numpy_helper.from_array(rng.normal(size=(classes, 4)).astype(np.float32), "G")]
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu")]
    opsets = [helper.make_opsetid("", 17)]
    last = "relu"
    if head == "loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Relu", ["v_in"], ["v_out"])],
            "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
        inits += [numpy_helper.from_array(np.array(2, np.int64), "trip"),
                  numpy_helper.from_array(np.array(True), "cond")]
        nodes.append(helper.make_node("Loop", ["trip", "cond", "relu"], ["looped"], name="loop", body=body))
        last = "looped"
    elif head == "contrib":
        nodes.append(helper.make_node("FastGelu", ["relu"], ["gelu"], name="fast_gelu", domain="com.microsoft"))
        opsets.append(helper.make_opsetid("com.microsoft", 1))
        last = "gelu"
    elif head != "plain":
        raise ValueError(f"unknown head {head!r}")
    nodes += [helper.make_node("GlobalAveragePool", [last], ["pool"], name="gap"),
              helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "G"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
