"""An explanation: maps of one CAM run, frozen, that can save itself (arrays, overlays, manifest)."""
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
        """Per-map min–max scaling (ε = 1e-7). Min and max come from the low-resolution map, so the
        result equals scaling first and resizing after (as pytorch-grad-cam does)."""
        flat = self.low_res.flatten(1)
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
