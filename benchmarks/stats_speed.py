"""R²* and partial dCor: KDX's Gram-based torch implementation against the `dcor` package.

Run: python benchmarks/stats_speed.py. For n = 1000, d = 2048 random (seeded) features it prints the
best-of-repeats time of each implementation (after a warm-up on a small input), the speed ratio
dcor/ours and the largest absolute difference of the values. dcor's fast paths apply only to d = 1,
so its generic path is timed, twice:
- as installed: with array_api_compat present, dcor 0.7 does not recognise numpy arrays as numpy
  (``array_namespace(x) != np``) and computes distances by broadcasting, an n×n×d temporary
  (16 GiB here, tens of seconds a call, hence fewer repeats);
- with its scipy ``cdist`` path restored (that check patched to True), the path dcor intends.
It then times the 95% interval of R²* and of the partial form from the n×n distance matrices: the
delete-one jackknife the engine uses (all n leave-one-out values by O(n²) closed forms) against the
former bootstrap (200 resamples with replacement, each re-indexed and re-U-centred).
"""
from __future__ import annotations

import os
import time
from unittest import mock

import dcor
import numpy as np
import torch

from kdx_engine.stats import (
    distance_matrix, jackknife_partial_r2, jackknife_r2_star, partial_r2, partial_r2_centred, r2_star,
    r2_star_centred, u_centre,
)

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


def report(name: str, our_result: tuple[float, float], dcor_result: tuple[float, float]) -> None:
    (our_time, our_value), (dcor_time, dcor_value) = our_result, dcor_result
    difference = abs(our_value - dcor_value)
    print(f"  {name:<22} {dcor_time * 1e3:9.1f} ms   value {dcor_value:.15f}   "
          f"dcor/ours {dcor_time / our_time:6.1f}x   |difference| {difference:.2e} "
          f"{'ok' if difference <= 1e-9 else 'EXCEEDS 1e-9'}")


def former_bootstrap(statistic, matrices, resamples=200, seed=0) -> float:
    """The former engine's resampling loop (its interval arithmetic left out; it costs nothing)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        index = torch.as_tensor(rng.integers(0, N, size=N))
        draws.append(float(statistic(*(u_centre(m[index[:, None], index]) for m in matrices))))
    return float(np.mean(draws))


def time_intervals(x, y, z) -> None:
    matrices = [distance_matrix(f) for f in (x, y, z)]
    print(f"95% interval from n×n distance matrices, n = {N}:")
    for name, jackknife, statistic, used in (("R2*", jackknife_r2_star, r2_star_centred, matrices[:2]),
                                             ("partial", jackknife_partial_r2, partial_r2_centred, matrices)):
        jackknife(*(m[:20, :20] for m in used))
        ours, _ = best_time(lambda: jackknife(*used).se, OUR_REPEATS)
        former, _ = best_time(lambda: former_bootstrap(statistic, used), 1)
        print(f"  {name:<8} delete-one jackknife {ours * 1e3:8.1f} ms   former bootstrap (200) {former * 1e3:9.1f} ms"
              f"   {former / ours:6.0f}x faster")


def main() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((N, D))
    y = 0.5 * x + rng.standard_normal((N, D))
    z = 0.5 * y + rng.standard_normal((N, D))
    cases = {
        "R2* vs u_distance_correlation_sqr": (r2_star, dcor.u_distance_correlation_sqr, (x, y)),
        "partial_r2 vs partial_distance_correlation": (partial_r2, dcor.partial_distance_correlation, (x, y, z)),
    }
    print(f"n = {N}, d = {D}, float64; best of {OUR_REPEATS} (ours) and {DCOR_REPEATS} (dcor); "
          f"torch threads = {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, (ours, theirs, inputs) in cases.items():
        small = [v[:20, :8] for v in inputs]
        ours(*small), theirs(*small)  # warm-up: lazy imports, compilation
        our_result = best_time(lambda: ours(*inputs), OUR_REPEATS)
        print(f"{name}:\n  {'ours':<22} {our_result[0] * 1e3:9.1f} ms   value {our_result[1]:.15f}")
        report("dcor as installed", our_result, best_time(lambda: theirs(*inputs), DCOR_REPEATS))
        with mock.patch("dcor.distances._can_be_numpy_double", return_value=True):
            report("dcor with scipy cdist", our_result, best_time(lambda: theirs(*inputs), DCOR_REPEATS))
    time_intervals(x, y, z)


if __name__ == "__main__":
    main()
