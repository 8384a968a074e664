"""Comparison speed: one new image's whole comparison (PRODUCT §5–§6), after vs before vs the floor.

ResNet-50 Teacher, ResNet-18 Student and Base (10 classes) at 224×224, images 224×224 (no resize, no
crop), random weights, CPU, UniCAM n = 16 with its reference rows cached (one warm-up call first).

- floor : the sum of one bare inference forward (batch 1) of T, S and B on the image;
- after : ``compare_image`` — Grad-CAMs of T, S and B, UniCAM distilled and residual, T − S and the map
          metrics, each model running one forward that also serves its prediction and UniCAM;
- before: the same from the engine's lower-level pieces as the window did before: per model one
          ``logits`` for the probabilities, one more to resolve the target, then the CAM call (its own
          forward), and two cached ``UniCam`` objects whose ``explain`` runs its own forwards of X and Y.

Each repetition uses a new query image (not in the reference set) for all three, interleaved so that a
change in machine load hits all alike. Prints the best (and median) seconds per image, after/floor
(target ≤ 1.5), before/floor, the speed-up and the max difference between the after and before maps.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from kdx_engine.cams import cam_method, compare_maps
from kdx_engine.cams.targets import resolve_targets
from kdx_engine.comparison.comparison import (ComparisonModel, ComparisonSettings, UniCamCache, compare_image,
                                              normalised)
from kdx_engine.comparison.image_grid import image_grid, maps_on_grid
from kdx_engine.data import LoadedImage
from kdx_engine.data.images import to_batch
from kdx_engine.models.backend import ModelInfo
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.models.torch_backend import TorchModuleBackend
from kdx_engine.unicam import ReferenceSet, UniCam

PANELS = ("teacher", "student", "base", "distilled", "residual")


def backend_for(module: torch.nn.Module, name: str, num_classes: int, input_size: int) -> TorchModuleBackend:
    info = ModelInfo(path=f"<{name}>", format="memory", backend="pytorch", architecture=name,
                     num_classes=num_classes, num_parameters=sum(p.numel() for p in module.parameters()),
                     preprocessing=Preprocessing(input_size=input_size, resize=None, source="benchmark"),
                     sha256="", notes=())
    return TorchModuleBackend(module, info)


def image(rng, index: int, size: int) -> LoadedImage:
    return LoadedImage(path=Path(f"img{index}.png"), rgb=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                       sha256=f"{index:064d}")


def before(models: dict, query: LoadedImage, settings: ComparisonSettings, explainers: dict) -> dict:
    """The comparison as the window computed it before: separate passes for probabilities, targets and
    each map, UniCAM with its own forwards; maps placed on the grid, T − S and the metrics as after."""
    grid = image_grid(*query.rgb.shape[:2])
    maps, on_grid = {}, {}
    for role in ("teacher", "student", "base"):
        model = models[role]
        x = to_batch([query], model.backend.info.preprocessing)
        torch.softmax(model.backend.logits(x).double(), dim=1)  # the probabilities
        targets = resolve_targets(settings.target_rule, model.backend.logits(x))  # the target
        explanation = cam_method(settings.method)(model.backend, layer=model.layer)(x, targets)
        maps[role] = explanation
    for key, explainer in explainers.items():
        maps[key] = explainer.explain(query)
    for key, explanation in maps.items():
        backend = models["student" if key == "distilled" else "base" if key == "residual" else key].backend
        on_grid[key] = maps_on_grid(explanation.low_res, query.rgb.shape[:2], backend.info.preprocessing, grid)[0]
    normalised(on_grid["teacher"]) - normalised(on_grid["student"])
    compare_maps(on_grid["teacher"], on_grid["student"])
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions, a new query image each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    size, classes = args.size, 10

    gallery = [image(rng, i, size) for i in range(30)]
    gallery_labels = [i % classes for i in range(30)]
    reference = ReferenceSet.from_images(gallery, gallery_labels, n=16)
    queries = [image(rng, 1000 + i, size) for i in range(args.repeats + 1)]
    query_labels = [i % classes for i in range(args.repeats + 1)]

    teacher_model = torchvision.models.resnet50(num_classes=classes).eval()
    student_model = torchvision.models.resnet18(num_classes=classes).eval()
    base_model = torchvision.models.resnet18(num_classes=classes).eval()
    bare = {"teacher": copy.deepcopy(teacher_model), "student": copy.deepcopy(student_model),
            "base": copy.deepcopy(base_model)}
    models = {role: ComparisonModel(backend_for(copy.deepcopy(module), role, classes, size), "layer4")
              for role, module in (("teacher", teacher_model), ("student", student_model), ("base", base_model))}
    settings = ComparisonSettings()
    cache = UniCamCache()
    teacher, student, base = (models[r].backend for r in ("teacher", "student", "base"))
    explainers = {"distilled": UniCam(student, base, reference, layer="layer4", variant=settings.unicam_variant,
                                      teacher=teacher),
                  "residual": UniCam(base, student, reference, layer="layer4", variant=settings.unicam_variant,
                                     teacher=teacher)}

    def floor(query):
        with torch.no_grad():
            for role, module in bare.items():
                module(to_batch([query], models[role].backend.info.preprocessing))

    def after(query, label):
        return compare_image(models, query, label, settings, reference=reference, unicam_cache=cache)

    # warm-up: reference rows computed once (the cache and the explainers), and the first-call costs
    start = time.perf_counter()
    after(queries[0], query_labels[0])
    first_after = time.perf_counter() - start
    before(models, queries[0], settings, explainers), floor(queries[0])

    times = {"floor": [], "before": [], "after": []}
    max_diff = 0.0
    for query, label in zip(queries[1:], query_labels[1:]):
        start = time.perf_counter()
        floor(query)
        times["floor"].append(time.perf_counter() - start)
        start = time.perf_counter()
        old = before(models, query, settings, explainers)
        times["before"].append(time.perf_counter() - start)
        start = time.perf_counter()
        new = after(query, label)
        times["after"].append(time.perf_counter() - start)
        for key in PANELS:
            max_diff = max(max_diff, float(np.abs(new.panels[key].values - old[key].maps[0].numpy()).max()))

    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"T ResNet-50, S and B ResNet-18, {classes} classes, {size}×{size}, UniCAM n = 16 "
          f"({settings.unicam_variant}), {args.repeats} new images, CPU threads {torch.get_num_threads()}")
    print(f"first comparison (reference rows)   : {first_after:8.3f} s")
    for name, label in (("floor", "floor (bare forwards T + S + B)"), ("before", "before (separate passes)"),
                        ("after", "after (compare_image)")):
        print(f"{label:<36}: {best[name]:8.3f} s/image best, {median[name]:8.3f} median")
    print(f"before / floor                      : {best['before'] / best['floor']:8.2f}   "
          f"(median {median['before'] / median['floor']:.2f})")
    print(f"after / floor                       : {best['after'] / best['floor']:8.2f}   "
          f"(median {median['after'] / median['floor']:.2f}; target <= 1.5)")
    print(f"after vs before speed-up            : {best['before'] / best['after']:8.2f}x  "
          f"(median {median['before'] / median['after']:.2f}x)")
    print(f"max |after - before| map difference : {max_diff:.2e}   ({', '.join(PANELS)}; expect ~1e-6)")


if __name__ == "__main__":
    main()
