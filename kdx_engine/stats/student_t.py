"""Quantiles of Student's t for real degrees of freedom (the jackknife's Satterthwaite t interval),
without scipy: bisection on the tail ½·I_{ν/(ν+t²)}(ν/2, ½), the regularised incomplete beta by its
continued fraction (modified Lentz)."""
from __future__ import annotations

import math
from statistics import NormalDist


def _regularised_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), for the t distribution's tail."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _regularised_incomplete_beta(b, a, 1.0 - x)
    tiny = 1e-300
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * fraction


def student_t_quantile(p: float, df: float) -> float:
    """The p-quantile (p > 0.5) of Student's t with ``df`` > 0 degrees of freedom (∞: normal)."""
    z = NormalDist().inv_cdf(p)
    if not math.isfinite(df) or df > 1e7:
        return z
    tail = 1.0 - p
    low, high = z, z
    while 0.5 * _regularised_incomplete_beta(df / 2, 0.5, df / (df + high * high)) > tail:
        high *= 2.0
    for _ in range(200):  # bisection on the upper tail ½·I_{ν/(ν+t²)}(ν/2, ½)
        middle = (low + high) / 2
        if 0.5 * _regularised_incomplete_beta(df / 2, 0.5, df / (df + middle * middle)) > tail:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2
