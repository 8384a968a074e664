"""Visual-concepts speed (METHODS §6), in one run, on the demo models at the published settings.

Prints, per demo model (Teacher, Student, Base as .pth, Student as .onnx): seconds per image and model
for one entropy map (G = 16, B = 96, 80 steps); the time of one σ step over one bare forward + VJP to
the input of the B noise draws through the same backend (the floor; target ≤ 1.2); and the speed-up of
batching the B draws over a one-draw-at-a-time loop (same draws, same gradient). Times are the best of
``--repeats`` rounds, the variants interleaved so that machine load hits them alike. Threads: 1
(``--threads``), as the background run uses.
"""
from __future__ import annotations

import argparse
import time

import torch

from kdx_engine.bundled import DEMO_DATASET, DEMO_MODELS
from kdx_engine.concepts.entropy_map import EntropySettings, _FeatureError, entropy_map, upsample_cells
from kdx_engine.data.images import load_image, to_tensor
from kdx_engine.models import INPUT, default_target_layer, load_model, probe_layers

MODELS = ("teacher.pth", "student.pth", "base.pth", "student.onnx")
FLOOR_TARGET = 1.2


def best_times(functions: dict, repeats: int) -> dict:
    best = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def one_step(error: _FeatureError, sigma: torch.Tensor, eps: torch.Tensor, scale: float) -> torch.Tensor:
    """One σ step's gradient work: noise, batched forward + VJP, back to σ (what entropy_map does per step)."""
    leaf = sigma.clone().requires_grad_(True)
    with torch.enable_grad():
        noise = upsample_cells(leaf, tuple(eps.shape[-2:])) * eps
    _, gradient = error.mean_and_gradient(noise.detach(), scale)
    (grad,) = torch.autograd.grad(noise, leaf, gradient)
    return grad


def one_at_a_time(error: _FeatureError, sigma: torch.Tensor, eps: torch.Tensor, scale: float) -> torch.Tensor:
    """The same gradient, one draw per forward + VJP."""
    total = torch.zeros_like(sigma)
    for b in range(eps.shape[0]):
        total += one_step(error, sigma, eps[b:b + 1], scale) / eps.shape[0]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-full-map", action="store_true", help="skip the full 80-step map per model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = EntropySettings()
    image = load_image(next(p for p in sorted(DEMO_DATASET.glob("*/*.png")) if not p.name.endswith(".mask.png")))
    print(f"published settings: G = {settings.grid}, B = {settings.draws}, {settings.steps} steps; "
          f"{args.threads} thread(s); best of {args.repeats}")
    for name in args.models.split(","):
        backend = load_model(DEMO_MODELS / name)
        layer = default_target_layer(probe_layers(backend))
        x = to_tensor(image, backend.info.preprocessing)[None]
        error = _FeatureError(backend, x, layer)
        eps = torch.randn((settings.draws, *x.shape[1:]), generator=torch.Generator().manual_seed(0))
        sigma = torch.full((settings.grid, settings.grid), settings.sigma_init)
        noise = upsample_cells(sigma, tuple(x.shape[-2:])) * eps
        batch = x + noise

        def bare():
            forward = backend.forward(batch, layers=[layer], grad_layer=INPUT)
            return forward.vjp({layer: forward.activations[layer]})

        times = best_times({"bare": bare, "step": lambda: one_step(error, sigma, eps, 1.0)}, args.repeats)
        single = best_times({"loop": lambda: one_at_a_time(error, sigma, eps, 1.0)}, 1)["loop"]
        same = torch.allclose(one_step(error, sigma, eps, 1.0), one_at_a_time(error, sigma, eps, 1.0),
                              rtol=1e-3, atol=1e-6)
        line = (f"{name:14s} layer {layer}: step {times['step'] * 1e3:7.1f} ms, floor {times['bare'] * 1e3:7.1f} ms, "
                f"step/floor {times['step'] / times['bare']:.2f} (target ≤ {FLOOR_TARGET}); "
                f"batched vs one draw at a time: {single / times['step']:.1f}× (same gradient: {same})")
        if not args.no_full_map:
            start = time.perf_counter()
            entropy_map(backend, x, layer, settings)
            line += f"; {time.perf_counter() - start:.1f} s per image"
        print(line, flush=True)


if __name__ == "__main__":
    main()
