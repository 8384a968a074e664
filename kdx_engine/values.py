"""The engine's one "value or NaN with a reason" type (plain Python: no torch, no numpy).

Every statistic the engine reports as a number is a :class:`Value`: a float, optionally with an
interval ``[low, high]``, or NaN together with the reason it is undefined for this input. Dataset
metrics (FSS, CKA, RS) carry a jackknife interval; per-image map metrics carry none (``low`` and
``high`` stay NaN). ``reason`` may also explain a defined value whose interval is undefined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Value:
    """A statistic's value and optional interval; NaN (``null`` in JSON) with a ``reason`` when undefined."""

    value: float
    low: float = math.nan
    high: float = math.nan
    reason: str | None = None

    @classmethod
    def undefined(cls, reason: str) -> "Value":
        """NaN, with the reason the statistic is undefined."""
        return cls(math.nan, reason=reason)

    @property
    def is_defined(self) -> bool:
        """Whether the value itself is a finite number (its interval may still be undefined)."""
        return math.isfinite(self.value)

    @property
    def has_interval(self) -> bool:
        """Whether both interval bounds are finite."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __float__(self) -> float:
        return float(self.value)
