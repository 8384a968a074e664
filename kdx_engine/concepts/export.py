"""Writing a concepts analysis as one folder: ``concepts.json``, ``images.csv``, ``summary.csv``,
``entropy_maps/<role>[/epoch_XX]/<image>.npy`` (G×G float32 cell entropies) and ``manifest.json``.

The folder is written complete under a temporary name beside its destination and renamed into place,
so a cancelled or failed run leaves no half-written result (an existing folder is replaced only with
``overwrite``, and only once the new one is complete).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from kdx_engine.atomic_files import staged_folder
from kdx_engine.concepts.analysis import ConceptsResult
from kdx_engine.concepts.concept_counts import statistic_names, value_record
from kdx_engine.output_paths import check_writable_folder, unique_stems
from kdx_engine.provenance import package_versions
from kdx_engine.stats.jackknife import LEVEL, METHOD as JACKKNIFE

INTERVALS = (f"{JACKKNIFE} over images ({LEVEL:.0%}); H̄ and every count recomputed per replicate; "
             "differences are paired (one image left out of both models)")


def check_output_folder(folder: str | os.PathLike, overwrite: bool) -> None:
    """Refuse before any work: an existing ``folder`` without ``overwrite``, a file there, no write access."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: is a file; give a folder for the concepts output")
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder}: exists (use --overwrite)")
    check_writable_folder(folder.parent if str(folder.parent) else Path("."), "concepts output")


def image_names(result: ConceptsResult) -> list[str]:
    """Unique file stems for the images' maps (``class/00001.png`` → ``class__00001``)."""
    return unique_stems("__".join([p.parent.name, p.stem] if p.parent.name else [p.stem])
                        for p in (image.path for image in result.images))


def to_json(result: ConceptsResult, provenance: dict | None = None) -> dict:
    """The result's numbers and their definitions as JSON-ready data (NaN as null)."""
    names = image_names(result)
    stats = statistic_names(result.has_masks)
    models = {}
    for role, model in result.models.items():
        models[role] = {**model.record, "H_bar": _finite(model.counts.h_bar),
                        "statistics": {k: value_record(v) for k, v in model.statistics.items()},
                        "kept_step": {"mean": float(np.mean(model.steps)), "min": int(np.min(model.steps)),
                                      "max": int(np.max(model.steps))},
                        "kept_mean_entropy": {"mean": float(np.mean(model.mean_entropy)),
                                              "min": float(np.min(model.mean_entropy)),
                                              "max": float(np.max(model.mean_entropy))}}
    trajectories = {}
    for role, run in result.trajectories.items():
        trajectories[role] = {"weights_layer": run.weights_layer, "checkpoints": list(run.files),
                              "analysed_epochs": list(run.epochs),
                              "metrics": {k: value_record(v) for k, v in run.result.metrics.items()},
                              "m_hat_epochs": [int(run.epochs[k]) for k in run.result.best]}
    return {
        "format": "kdx-concepts/1",
        **result.settings.to_json(),
        "layer_default": "the model's CAM layer (last layer with spatial output > 1)",
        "definitions": {
            "H_c": "log σ_c + ½ log(2πe) of the kept step",
            "H_bar": "mean entropy of all background cells over the analysed images (all cells without masks)",
            "concept": "cell with H̄ − H_c > b",
            "foreground_cell": "at least half of the cell's pixels inside the object mask (our choice)",
            "lambda_ratio": "mean over images with ≥ 1 concept of N_fg/(N_fg + N_bg)",
            "Dist": "Σ_{k≤m} ‖w_k − w_{k−1}‖/‖w_0‖ over every checkpoint file in epoch order",
            "m_hat": "argmax_k N_fg(x; w_k) over the analysed checkpoints (ties: earliest)",
            "D_var": "population variance over images of Dist(m̂_x)",
            "rho": "mean over images with a non-empty union of |S_last|/|∪_k S_k|, S = foreground concept cells",
        },
        "has_masks": result.has_masks,
        "statistics_reported": list(stats),
        "n_images": result.n,
        "models": models,
        "differences": {"definition": "student − base", **{k: value_record(v) for k, v in result.differences.items()}},
        "trajectories": trajectories,
        "trajectory_differences": {"definition": "student − base",
                                   **{k: value_record(v) for k, v in result.trajectory_differences.items()}},
        "intervals": INTERVALS,
        "seconds_per_map": _finite(result.seconds_per_map),
        "notes": list(result.notes),
        "images": [{"name": name, "file": str(image.path), "sha256": image.sha256,
                    "has_mask": image.mask is not None} for name, image in zip(names, result.images)],
        **(provenance or {}),
    }


def manifest(result: ConceptsResult, provenance: dict | None = None) -> dict:
    """What every export records (METHODS §9)."""
    settings = result.settings.to_json()
    return {
        "method": "visual concepts of KD (Cheng et al., METHODS §6)", "variant": settings["method"],
        "description": settings["description"],
        "models": {role: m.record for role, m in result.models.items()},
        "checkpoints": {role: list(run.files) for role, run in result.trajectories.items()},
        "layers": {role: m.layer for role, m in result.models.items()},
        "target_classes": "none: entropy maps depend on the layer's features, not on a class",
        "reference_set": "none",
        "estimators": {"intervals": INTERVALS, "threshold_b": settings["threshold_b"]},
        "n_images": result.n,
        "images_sha256": [image.sha256 for image in result.images],
        "seed": settings["settings"]["seed"],
        "settings": settings["settings"],
        "versions": package_versions(),
        **(provenance or {}),
    }


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _finite(value):
    return float(value) if value is not None and math.isfinite(value) else None


def _cell(value) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.6g}"


def images_csv(result: ConceptsResult) -> str:
    """One row per image and model (and analysed checkpoint): counts, kept step, mean entropy."""
    rows = [["image", "role", "epoch", "N", "N_fg", "N_bg", "kept_step", "kept_mean_entropy"]]
    names = image_names(result)
    for role, model in result.models.items():
        for i, name in enumerate(names):
            c = model.counts
            rows.append([name, role, "", int(c.n[i]), "" if c.n_fg is None else int(c.n_fg[i]),
                         "" if c.n_bg is None else int(c.n_bg[i]), int(model.steps[i]), _cell(model.mean_entropy[i])])
    return _csv(rows)


def summary_csv(result: ConceptsResult) -> str:
    """One row per statistic and model (and Student − Base): value, low, high."""
    rows = [["statistic", "model", "value", "low", "high", "reason"]]
    for role, model in result.models.items():
        for name, v in model.statistics.items():
            rows.append([name, role, _cell(v.value), _cell(v.low), _cell(v.high), v.reason or ""])
    for name, v in result.differences.items():
        rows.append([name, "student-base", _cell(v.value), _cell(v.low), _cell(v.high), v.reason or ""])
    for role, run in result.trajectories.items():
        for name, v in run.result.metrics.items():
            rows.append([name, role, _cell(v.value), _cell(v.low), _cell(v.high), v.reason or ""])
    for name, v in result.trajectory_differences.items():
        rows.append([name, "student-base", _cell(v.value), _cell(v.low), _cell(v.high), v.reason or ""])
    return _csv(rows)


def save_concepts(result: ConceptsResult, folder: str | os.PathLike, overwrite: bool = False,
                  provenance: dict | None = None) -> Path:
    """Write the whole result into ``folder`` atomically (see the module docstring)."""
    folder = Path(folder)
    check_output_folder(folder, overwrite)
    with staged_folder(folder) as staging:
        _write_all(result, staging, provenance)
    return folder


def _write_all(result: ConceptsResult, root: Path, provenance: dict | None) -> None:
    names = image_names(result)
    (root / "concepts.json").write_text(json.dumps(to_json(result, provenance), indent=2, allow_nan=False,
                                                   default=str) + "\n", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps(manifest(result, provenance), indent=2, allow_nan=False,
                                                   default=str) + "\n", encoding="utf-8")
    (root / "images.csv").write_text(images_csv(result), encoding="utf-8")
    (root / "summary.csv").write_text(summary_csv(result), encoding="utf-8")
    for role, model in result.models.items():
        _write_maps(root / "entropy_maps" / role, names, model.entropies)
    for role, run in result.trajectories.items():
        for epoch, maps in zip(run.epochs, run.entropies):
            _write_maps(root / "entropy_maps" / role / f"epoch_{epoch:02d}", names, maps)


def _write_maps(folder: Path, names, entropies) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, entropy in zip(names, entropies):
        np.save(folder / f"{name}.npy", np.asarray(entropy, dtype=np.float32), allow_pickle=False)
