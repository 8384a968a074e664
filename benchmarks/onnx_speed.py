"""Grad-CAM speed through onnxruntime (onnx-ad heads) vs through PyTorch, on the same ResNet-18.

ResNet-18 at 224×224, batch 8, CPU, random weights (no download), exported with the legacy exporter
(``--exporter dynamo`` for the default one). For each layer: the one-off head building time (cut +
onnx-ad + onnxruntime session; layer4's pooling + Gemm head is dynamic, layer3's holds convolutions
and is built for the batch's shape), the first Grad-CAM call, then the steady time of both backends
(best of ``--repeats``), their ratio and the max difference of the normalised maps.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision

from kdx_engine.cams import ClassTarget, cam_method
from kdx_engine.models import LOGITS, load_model
from kdx_engine.models.backend import ModelInfo
from kdx_engine.models.onnx_heads import clear_head_cache
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.models.torch_backend import TorchModuleBackend


def best_time(fn, repeats: int) -> tuple[float, object]:
    result, best = None, float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def export(model: torch.nn.Module, path: Path, size: int, exporter: str) -> Path:
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy")
    parser.add_argument("--layers", nargs="+", default=["layer4", "layer3"])
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    targets = [ClassTarget(k) for k in range(args.batch)]
    info = ModelInfo("<resnet18>", "memory", "pytorch", "resnet18", 1000, None,
                     Preprocessing(input_size=args.size), "", ())
    pytorch = TorchModuleBackend(copy.deepcopy(model), info)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = export(model, Path(folder) / "resnet18.onnx", args.size, args.exporter)
        exported = time.perf_counter() - start
        start = time.perf_counter()
        onnx = load_model(path)
        loaded = time.perf_counter() - start
        print(f"ResNet-18, {args.size}×{args.size}, batch {args.batch}, {torch.get_num_threads()} threads, "
              f"{args.exporter} export {exported:.2f} s, load {loaded:.2f} s ({onnx.info.backend})")
        for layer in args.layers:
            clear_head_cache()
            forward = onnx.forward(x, grad_layer=layer)
            start = time.perf_counter()
            forward.vjp({LOGITS: torch.zeros_like(forward.logits)})
            head_build = time.perf_counter() - start
            clear_head_cache()
            ours = cam_method("gradcam")(onnx, layer=layer)
            reference = cam_method("gradcam")(pytorch, layer=layer)
            start = time.perf_counter()
            ours(x, targets)
            first = time.perf_counter() - start
            onnx_time, onnx_maps = best_time(lambda: ours(x, targets), args.repeats)
            torch_time, torch_maps = best_time(lambda: reference(x, targets), args.repeats)
            difference = float((onnx_maps.normalised() - torch_maps.normalised()).abs().max())
            print(f"{layer}: head build {head_build:.2f} s (first Grad-CAM call {first:.2f} s) | "
                  f"onnxruntime {onnx_time:.3f} s, PyTorch {torch_time:.3f} s, ratio onnxruntime/PyTorch "
                  f"{onnx_time / torch_time:.2f} | max map difference {difference:.1e}")


if __name__ == "__main__":
    main()
