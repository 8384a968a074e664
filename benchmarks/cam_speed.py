"""Grad-CAM speed: KDX vs pytorch-grad-cam on the same model, layer, targets and batch, in one run.

ResNet-50 (layer4) and DeiT-S (timm, ``blocks[-1].norm1`` with grad-cam's documented ViT reshape
transform) at 224×224, batch 8, CPU, random weights (no download). Prints each time (best of
``--repeats``), the ratio grad-cam / KDX (target ≥ 2: KDX differentiates nothing before the layer),
KDX over one bare inference forward (the floor; target ≤ 1.3) and the max difference between KDX's
normalised maps (``Explanation.normalised()``, not re-normalised here) and grad-cam's (target ≤ 1e-5).
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import timm
import torch
import torchvision
from pytorch_grad_cam import GradCAM as ReferenceGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from kdx_engine.cams import ClassTarget, cam_method
from kdx_engine.models.backend import ModelInfo
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.models.torch_backend import TorchModuleBackend


def best_times(functions: dict, repeats: int) -> tuple[dict, dict]:
    """Best time of each function over ``repeats`` rounds, the functions interleaved within a round so
    that a change in machine load hits all of them alike."""
    best = {name: float("inf") for name in functions}
    results = {}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def vit_reshape_transform(tensor, height=14, width=14):
    """pytorch-grad-cam's documented ViT/DeiT reshape transform (vit_example.py): class token dropped."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def compare(label: str, model, layer: str, args, reshape_transform=None) -> None:
    """Time KDX's Grad-CAM, pytorch-grad-cam's and one bare forward on ``model`` at ``layer``; print the row."""
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    classes = list(range(args.batch))
    info = ModelInfo(f"<{label}>", "memory", "pytorch", label, 1000, None, Preprocessing(input_size=args.size), "", ())
    ours = cam_method("gradcam")(TorchModuleBackend(copy.deepcopy(model), info), layer=layer)
    reference_model = copy.deepcopy(model)
    reference = ReferenceGradCAM(model=reference_model, target_layers=[reference_model.get_submodule(layer)],
                                 reshape_transform=reshape_transform)
    bare = copy.deepcopy(model)

    def run_ours():
        return ours(x, [ClassTarget(k) for k in classes])

    def run_reference():
        return reference(input_tensor=x, targets=[ClassifierOutputTarget(k) for k in classes])

    def run_bare():
        with torch.inference_mode():
            return bare(x)

    run_ours(), run_reference(), run_bare()  # warm-up
    times, results = best_times({"bare": run_bare, "ours": run_ours, "reference": run_reference}, args.repeats)
    t_bare, t_ours, t_ref = times["bare"], times["ours"], times["reference"]
    ours_result, ref_maps = results["ours"], results["reference"]
    reference.__exit__(None, None, None)

    got = ours_result.normalised().numpy()  # the map the user gets (min–max after resizing), as it is
    print(f"{label} {args.size}×{args.size}, batch {args.batch}, {layer}, CPU threads {torch.get_num_threads()}")
    print(f"  bare inference forward : {t_bare * 1000:8.1f} ms")
    print(f"  KDX Grad-CAM           : {t_ours * 1000:8.1f} ms")
    print(f"  pytorch-grad-cam       : {t_ref * 1000:8.1f} ms")
    print(f"  speed-up vs grad-cam   : {t_ref / t_ours:8.2f}x   (target >= 2 for ResNet-50)")
    print(f"  KDX / bare forward     : {t_ours / t_bare:8.2f}    (target <= 1.3 for ResNet-50)")
    print(f"  max map difference     : {np.abs(got - ref_maps).max():.2e}   (normalised maps as shown; target <= 1e-5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=("all", "resnet50", "deit_small"), default="all")
    args = parser.parse_args()

    if args.model in ("all", "resnet50"):
        torch.manual_seed(0)
        compare("ResNet-50", torchvision.models.resnet50().eval(), "layer4", args)
    if args.model in ("all", "deit_small"):
        torch.manual_seed(0)
        deit = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=args.size).eval()
        with torch.no_grad():
            deit.head.weight.mul_(30)  # a trained head's scale: raw maps span well above grad-cam's ε
        grid = args.size // 16
        compare("DeiT-S", deit, "blocks.11.norm1", args,
                reshape_transform=lambda t: vit_reshape_transform(t, grid, grid))


if __name__ == "__main__":
    main()
