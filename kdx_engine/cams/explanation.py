"""An explanation: maps of one CAM run, frozen, that can save itself (arrays, overlays, manifest).

Normalisation for display (METHODS §4.5, §5; our choice): per-map min–max with ε = 1e-7 of the map
*after* bilinear resizing to the input, ``(M − min M) / (max M − min M + ε)``, as pytorch-grad-cam and
the UniCAM authors' code give it (they scale again after resizing; grad-cam's first scaling adds its ε
once more on the raw scale, so the two part by about ε / (raw range), ≤ 1e-5 where the raw map spans
≥ 1e-2). Scaling before resizing, with the low-resolution map's extrema, differed from grad-cam by
1e-2 to 2e-1 (ResNet-18 layer2–3, a small CNN) wherever upsampling lowers an interior peak.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..figures.overlay import overlay
from ..atomic_files import atomic_write_bytes, atomic_write_text
from ..provenance import package_versions

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

    def save(
        self,
        out_dir: str | Path,
        names: Sequence[str],
        display_images: Sequence[np.ndarray],
        provenance: dict,
        colormap: str = "jet",
        opacity: float = 0.5,
        overwrite: bool = False,
    ) -> Path:
        """Write ``<name>.npy`` (raw map), ``<name>.png`` (overlay) per image and ``manifest.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / f"{name}.{ext}" for name in names for ext in ("npy", "png")] + [out / "manifest.json"]
        existing = [p.name for p in targets if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{out}: would overwrite {', '.join(existing[:3])} (use --overwrite)")
        normalised = self.normalised().numpy()
        for i, name in enumerate(names):
            buffer = io.BytesIO()
            np.save(buffer, self.maps[i].numpy().astype(np.float32))
            atomic_write_bytes(out / f"{name}.npy", buffer.getvalue())
            png = io.BytesIO()
            Image.fromarray(overlay(display_images[i], normalised[i], colormap, opacity)).save(png, format="PNG")
            atomic_write_bytes(out / f"{name}.png", png.getvalue())
        manifest = {
            "method": self.method,
            "layer": self.layer,
            "target_rule": self.target_rule,
            "normalisation": "per-map min-max, eps 1e-7 (raw maps in .npy)",
            "images": [
                {"name": name, "target": target, "note": note, "map": f"{name}.npy", "overlay": f"{name}.png"}
                for name, target, note in zip(names, self.targets, self.notes)
            ],
            **self.details,
            **provenance,
            "versions": package_versions(),
        }
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        return out / "manifest.json"
