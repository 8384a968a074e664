"""An explanation: the maps of one CAM run, frozen (the CLI and the exporter write them).

Normalisation for display (METHODS §4.5, §5; our choice): per-map min–max with ε = 1e-7 of the map
*after* bilinear resizing to the input, ``(M − min M) / (max M − min M + ε)``, as pytorch-grad-cam and
the UniCAM authors' code give it (they scale again after resizing; grad-cam's first scaling adds its ε
once more on the raw scale, so the two part by about ε / (raw range), ≤ 1e-5 where the raw map spans
≥ 1e-2). Scaling before resizing, with the low-resolution map's extrema, differed from grad-cam by
1e-2 to 2e-1 (ResNet-18 layer2–3, a small CNN) wherever upsampling lowers an interior peak.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

NORMALISATION_EPS = 1e-7


@dataclass(frozen=True, eq=False)
class Explanation:
    """Maps for a batch: ``low_res`` (N×h×w, after ReLU) and ``maps`` (N×H×W, bilinear to the input),
    both raw; ``notes[i]`` says why map i is blank or broken (None when fine)."""

    method: str
    layer: str
    targets: tuple[int, ...]
    target_rule: str
    low_res: torch.Tensor
    maps: torch.Tensor
    logits: torch.Tensor
    notes: tuple[str | None, ...]
    details: dict = field(default_factory=dict)

    def normalised(self) -> torch.Tensor:
        """Per-map min–max scaling (ε = 1e-7) of the map after bilinear resizing to the input: min and
        max come from ``maps`` itself, so every map with any positive value spans [0, 1) exactly as
        pytorch-grad-cam's output does; an all-zero map stays zero."""
        flat = self.maps.flatten(1)
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
        return (self.maps - low[:, None, None]) / (high - low + NORMALISATION_EPS)[:, None, None]
