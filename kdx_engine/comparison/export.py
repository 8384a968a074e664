"""Export of comparisons: the figure panel, and beside it (in ``<stem>_data/``) the raw maps (``.npy``,
on each image's pixel grid, NaN outside a model's crop), the metrics (CSV and JSON) and
``manifest.json`` with what METHODS §9 lists. Everything is checked before anything is written,
every file is written atomically, and nothing existing is replaced without ``overwrite``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic_files import atomic_write_bytes, staged_folder
from ..figures.figure_panel import FigureOptions, metric_values, render_figure
from ..messages import printable
from ..output_paths import check_new_file, unique_stems
from ..provenance import package_versions
from ..roles import ROLES
from .comparison import NORMALISATION, Comparison

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ExportResult:
    figure: Path
    folder: Path
    files: tuple[Path, ...]


def data_folder(figure: Path) -> Path:
    """Where the maps, metrics and manifest of a figure go: ``<stem>_data/`` beside it."""
    return figure.with_name(f"{figure.stem}_data")


def check_export_location(figure: str | os.PathLike, overwrite: bool) -> Path:
    """The figure path with its suffix checked; raises before any work when it cannot be written."""
    figure = Path(figure)
    check_new_file(figure, overwrite, "figure")
    folder = data_folder(figure)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder}: exists (use --overwrite)")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: is a file; the export needs this name for its data folder")
    return figure


def export_comparisons(comparisons: Sequence[Comparison], figure: str | os.PathLike, options: FigureOptions,
                       overwrite: bool = False, provenance: dict | None = None) -> ExportResult:
    """Write the figure and its data folder; returns what was written."""
    figure = check_export_location(figure, overwrite)
    encoded = render_figure(comparisons, options)  # fails before anything is written
    names = unique_names(c.image.path for c in comparisons)
    rows = [metrics_row(c, name) for c, name in zip(comparisons, names)]
    manifest = export_manifest(comparisons, names, options, figure, provenance)
    folder = data_folder(figure)
    # the figure goes in place right after its data folder, before the old folder is removed
    with staged_folder(folder, then=lambda: atomic_write_bytes(figure, encoded)) as staging:
        (staging / "maps").mkdir()
        for comparison, name in zip(comparisons, names):
            for key, panel in comparison.panels.items():
                if panel.values is not None and panel.kind != "image":
                    np.save(staging / "maps" / f"{name}__{key}.npy", panel.values.astype(np.float32))
        (staging / "metrics.json").write_text(strict_json({"rows": rows}) + "\n", encoding="utf-8")
        (staging / "metrics.csv").write_text(metrics_csv(rows), encoding="utf-8")
        (staging / "manifest.json").write_text(strict_json(manifest) + "\n", encoding="utf-8")
    files = tuple(sorted(p for p in folder.rglob("*") if p.is_file()))
    return ExportResult(figure, folder, (figure, *files))


def unique_names(paths) -> list[str]:
    """File stems made unique (``img``, ``img_1``, …) so images of the same name never overwrite."""
    return unique_stems(Path(path).name.split(".")[0] or "image" for path in paths)


def metrics_row(comparison: Comparison, name: str) -> dict:
    """One image's metrics: predictions, targets, KL(T‖S), the T–S map metrics, with reasons for gaps."""
    row: dict = {"image": name, "file": str(comparison.image.path), "sha256": comparison.image.sha256,
                 "true_class": comparison.class_name(comparison.label) if comparison.label is not None else None}
    for role in ROLES:
        prediction = comparison.predictions.get(role)
        if prediction is None:
            continue
        row[f"{role}_predicted"] = comparison.class_name(prediction.predicted)
        row[f"{role}_p"] = float(prediction.probabilities[prediction.predicted])
        row[f"{role}_target"] = comparison.class_name(prediction.target) if prediction.target is not None else None
    row["kl_teacher_student"] = comparison.kl_teacher_student
    row.update({k: v for k, v in metric_values(comparison).items() if k != "kl"})
    for key, value in comparison.map_metrics.items():
        if key.endswith("_reason"):
            row[key.replace("_a_", "_teacher_").replace("_b_", "_student_")] = value
    return row


def metrics_csv(rows: list[dict]) -> str:
    """Rows as CSV (empty cells where a value is undefined), columns in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else printable(v) if isinstance(v, str) else v for k, v in row.items()})
    return buffer.getvalue()


def strict_json(data) -> str:
    """JSON with undefined numbers (NaN, inf) as null: never the non-standard ``NaN``."""
    return json.dumps(_finite(data), indent=2, allow_nan=False, default=str)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def export_manifest(comparisons: Sequence[Comparison], names: Sequence[str], options: FigureOptions,
                    figure: Path, provenance: dict | None) -> dict:
    """What METHODS §9 asks every export to record."""
    first = comparisons[0]
    images = []
    for comparison, name in zip(comparisons, names):
        images.append({
            "name": name, "file": str(comparison.image.path), "sha256": comparison.image.sha256,
            "size": [comparison.image.rgb.shape[1], comparison.image.rgb.shape[0]],
            "grid": {"height": comparison.grid.height, "width": comparison.grid.width, "scale": comparison.grid.scale},
            "true_class": comparison.label, "notes": list(comparison.notes),
            "panels": {key: {"title": p.title, "subtitle": p.subtitle, "note": p.note, "message": p.message,
                             "map": f"maps/{name}__{key}.npy" if p.values is not None and p.kind != "image" else None,
                             **p.details}
                       for key, p in comparison.panels.items() if key != "input"},
            "reference": comparison.reference,
        })
    return {
        "kdx_export": MANIFEST_VERSION,
        "figure": {"file": figure.name, "format": options.format, "dpi": options.dpi,
                   "columns": list(options.columns), "metrics": list(options.metrics)},
        "settings": first.settings.to_json(),
        "models": first.models,
        "class_names": list(first.class_names),
        "method": first.settings.method,
        "target_rule": first.settings.target_rule,
        "unicam": {"variant": first.settings.unicam_variant, "n": first.settings.reference_n,
                   "estimator": "label-free: Σ_i max_j P_{X|Y}[i, j]; label-guided: semi-partial R²* with one-hot "
                                "labels (METHODS §4)"},
        "maps": {"grid": "each image's own pixel grid (scaled uniformly when its longer side exceeds 1024 px); "
                         "NaN outside a model's crop",
                 "values": "raw maps after ReLU, bilinear from the layer's resolution (.npy, float32)",
                 "normalisation": NORMALISATION},
        "metrics_definitions": {"pearson": "Pearson r of the raw T and S maps on the pixels both models see",
                                "spearman": "Spearman ρ, average ranks", "top_iou": "IoU of each map's top 20% pixels",
                                "energy": "share of the positive map mass inside the object mask",
                                "kl_teacher_student": "KL(P_T‖P_S) in nats at τ = 1"},
        "n_images": len(comparisons),
        "images": images,
        "seed": (provenance or {}).get("seed", 0),
        **{k: v for k, v in (provenance or {}).items() if k != "seed"},
        "versions": package_versions(),
    }
