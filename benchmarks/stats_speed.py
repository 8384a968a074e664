"""R²* and partial dCor: KDX's Gram-based torch implementation against the `dcor` package.

Run: python benchmarks/stats_speed.py. Prints, for n = 1000, d = 2048 random (seeded) features, the
best-of-repeats time of each implementation (after a warm-up on a small input), the speed ratio
dcor/ours and the largest absolute difference of the values. dcor's fast paths apply only to d = 1,
so its generic path is timed; it takes tens of seconds a call, hence fewer repeats.
"""
from __future__ import annotations

import time

import dcor
import numpy as np
import torch

from kdx_engine.stats import partial_r2, r2_star

N, D, SEED = 1000, 2048, 0
OUR_REPEATS, DCOR_REPEATS = 5, 2


def best_time(function, repeats: int) -> tuple[float, float]:
    """Smallest wall time over ``repeats`` calls, and the value the function returned."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = float(function())
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((N, D))
    y = 0.5 * x + rng.standard_normal((N, D))
    z = 0.5 * y + rng.standard_normal((N, D))
    small = (x[:20, :8], y[:20, :8], z[:20, :8])
    cases = {
        "R2* (u_distance_correlation_sqr)": (r2_star, dcor.u_distance_correlation_sqr, (x, y)),
        "partial dCor (partial_distance_correlation)": (partial_r2, dcor.partial_distance_correlation, (x, y, z)),
    }
    print(f"n = {N}, d = {D}, float64, best of {OUR_REPEATS} (ours) and {DCOR_REPEATS} (dcor), "
          f"torch threads = {torch.get_num_threads()}")
    for name, (ours, theirs, inputs) in cases.items():
        ours(*small[:len(inputs)]), theirs(*small[:len(inputs)])  # warm-up: lazy imports, compilation
        our_time, our_value = best_time(lambda: ours(*inputs), OUR_REPEATS)
        dcor_time, dcor_value = best_time(lambda: theirs(*inputs), DCOR_REPEATS)
        difference = abs(our_value - dcor_value)
        print(f"{name}:")
        print(f"  ours {our_time * 1e3:9.1f} ms   value {our_value:.15f}")
        print(f"  dcor {dcor_time * 1e3:9.1f} ms   value {dcor_value:.15f}")
        print(f"  speed ratio dcor/ours {dcor_time / our_time:6.1f}x   max |difference| {difference:.2e}"
              f"   {'ok' if difference <= 1e-9 else 'EXCEEDS 1e-9'}")


if __name__ == "__main__":
    main()
