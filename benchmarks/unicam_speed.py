"""UniCAM speed: distilled and residual maps of one new query image, over the floor.

ResNet-50 teacher, ResNet-18 student and base at 224×224, n = 16 (15 reference images cached),
random weights, CPU. Floor: the sum of one bare inference forward of each model involved (Student and
Base; the query's label is given, so the Teacher is not run). Target ≤ 1.5. Also times a naive UniCAM
that recomputes all 16 images of both models with autograd through everything, for the ratio.
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torchvision

from kdx_engine.data.images import LoadedImage, to_batch
from kdx_engine.models.backend import PENULTIMATE, ModelInfo
from kdx_engine.models.preprocessing import IMAGENET_PRESET
from kdx_engine.models.torch_backend import TorchModuleBackend
from kdx_engine.unicam import VARIANTS, ReferenceSet, distilled_and_residual, unicam_score


def backend(model, name):
    info = ModelInfo(f"<{name}>", "memory", "pytorch", name, 10, None, IMAGENET_PRESET, name, ())
    return TorchModuleBackend(model, info)


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive(student, base, images, labels, variant):
    """Recompute everything: both models on all n images, autograd through the whole student."""
    student = copy.deepcopy(student).requires_grad_(True)
    store = {}
    student.layer4.register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    student.fc.register_forward_hook(lambda m, i, o: store.__setitem__("F", i[0]))
    base.fc.register_forward_hook(lambda m, i, o: store.__setitem__("FY", i[0]))
    student(images)
    with torch.no_grad():
        base(images)
    score = unicam_score(store["F"].double(), store["FY"].double(), labels, variant)
    return torch.autograd.grad(score, store["A"])[0][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", choices=VARIANTS, default=VARIANTS[0])
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [LoadedImage(path=f"img{i}.png", rgb=rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
                          sha256=f"{i:064d}") for i in range(16)]
    labels = [i % 10 for i in range(16)]
    reference = ReferenceSet(tuple(images[:15]), tuple(labels[:15]), "random")
    query = images[15]
    teacher = backend(torchvision.models.resnet50(num_classes=10).eval(), "resnet50")
    student_model, base_model = (torchvision.models.resnet18(num_classes=10).eval() for _ in range(2))
    student, base = backend(copy.deepcopy(student_model), "student"), backend(copy.deepcopy(base_model), "base")

    x = to_batch([query], IMAGENET_PRESET)

    def bare_forwards():
        with torch.inference_mode():
            student_model(x), base_model(x)

    bare_forwards()  # warm-up
    floor = best(bare_forwards, args.repeats)
    start = time.perf_counter()
    distilled_and_residual(student, base, reference, query, label=labels[15], teacher=teacher, variant=args.variant)
    first_call = time.perf_counter() - start
    t_pair = best(lambda: distilled_and_residual(student, base, reference, query, label=labels[15], teacher=teacher,
                                                 variant=args.variant),
                  args.repeats)
    batch = to_batch(images, IMAGENET_PRESET)
    t_naive = best(lambda: (naive(student_model, base_model, batch, labels, args.variant),
                            naive(base_model, student_model, batch, labels, args.variant)), args.repeats)
    print(f"ResNet-18 student and base at 224, n = 16, {args.variant}, CPU threads {torch.get_num_threads()}")
    print(f"floor (bare forward S + B, one image): {floor * 1000:8.1f} ms")
    print(f"first pair (reference rows computed) : {first_call * 1000:8.1f} ms")
    print(f"distilled + residual, cached         : {t_pair * 1000:8.1f} ms")
    print(f"naive recompute of both maps         : {t_naive * 1000:8.1f} ms")
    print(f"cached / floor                       : {t_pair / floor:8.2f}   (target <= 1.5)")
    print(f"naive / cached                       : {t_naive / t_pair:8.1f}x")


if __name__ == "__main__":
    main()
