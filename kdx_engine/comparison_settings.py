"""What a comparison computes and how it is drawn: one typed config for the engine, the CLI and the
window's controls. Pure Python (no torch), so the window can hold it before the engine has loaded."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ComparisonSettings:
    """What to compute (method, target rule, UniCAM variant and n) and how to draw it."""

    method: str = "gradcam"
    target_rule: str = "predicted"
    class_index: int = 0
    unicam_variant: str = "label-free"
    reference_n: int = 16
    colormap: str = "jet"
    opacity: float = 0.5
    threshold: float = 0.0
    shared_scale: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
