"""What a scan is before any engine runs it: the dataset's images and labels, the table's schema, the
manifest (METHODS §9), what a re-run can skip, and the work on one batch that every engine does."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..atomic_files import atomic_write_text
from ..cams import cam_method
from ..comparison import ComparisonModel, UniCamCache
from ..comparison.export import strict_json
from ..data.datasets import ImageFolderDataset
from ..data.image_stream import StreamItem
from ..data.path_list import PathList
from ..labels import labelling_class_names
from ..messages import printable
from ..output_paths import check_writable_folder
from ..provenance import package_versions
from ..roles import ROLES
from ..unicam import ReferenceSet
from .measures import BatchExplanations, ImageResult, ScanSettings, batch_rows, explain_batch
from .models import models_record
from .table import done_images, map_keys, table_schema, write_batch

MANIFEST = "manifest.json"
FORMAT = "kdx-scan/1"


@dataclass
class ScanJob:
    """A scan of ``dataset`` into ``out``: images (paths, labels), what was done before, the schema."""

    dataset: Path
    out: Path
    settings: ScanSettings
    paths: Sequence[Path]
    labels: list[int | None]
    class_names: tuple[str, ...]
    roles: tuple[str, ...]
    reference_folder: Path | None = None
    done: set = field(default_factory=set)
    label_note: str | None = None
    resume_note: str | None = None

    @property
    def schema(self):
        return table_schema(self.roles, self.settings, len(self.class_names))

    @property
    def map_keys(self) -> list[str]:
        return map_keys(self.roles, self.settings)

    def relative(self, path: Path) -> str:
        """The image's path as the table names it: relative to the dataset, printable."""
        try:
            return printable(Path(path).relative_to(self.dataset).as_posix())
        except ValueError:
            return printable(Path(path).as_posix())


def prepare_scan(dataset, out, settings: ScanSettings, models: dict[str, ComparisonModel],
                 reference_folder=None, overwrite: bool = False) -> ScanJob:
    """Check the output folder (a scan of other models or settings there is refused unless
    ``overwrite``), list the images and read what a previous run finished."""
    dataset, out = Path(dataset), Path(out)
    for method in settings.methods:
        cam_method(method)  # an unknown name is bad input, said before anything is read
    if settings.top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {settings.top_k}")
    if settings.faithfulness_steps < 0:
        raise ValueError(f"faithfulness steps must be ≥ 0 (0: none), got {settings.faithfulness_steps}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; give a folder for the scan")
    check_writable_folder(out, "scan folder")
    roles = tuple(role for role in ROLES if role in models)
    if "teacher" not in roles or "student" not in roles:
        raise ValueError("a scan needs a Teacher and a Student (and optionally a Base)")
    class_names = labelling_class_names(models[r].backend.info.preprocessing.class_names for r in roles)
    folder = ImageFolderDataset(dataset, class_names=class_names)
    if not len(folder):
        raise ValueError(f"{dataset}: no images found")
    job = ScanJob(dataset, out, settings, PathList(folder.paths), list(folder.labels), class_names, roles,
                  Path(reference_folder) if reference_folder else None, label_note=folder.label_note)
    previous = _read_manifest(out)
    identity = _identity(job, models)
    if previous is not None and previous.get("identity") != identity:
        if not overwrite:
            raise FileExistsError(f"{out}: holds a scan of other models, data or settings (use --overwrite "
                                  "to start again there)")
        _clear(out)
    elif previous is None and (out / "parts").exists() and not overwrite:
        raise FileExistsError(f"{out}: holds scan parts without a manifest (use --overwrite)")
    elif previous is not None and overwrite:
        _clear(out)
    job.done, stale = done_images(out, job.map_keys)
    if stale:
        for part in stale:  # KDX's own part files; their images are scanned again
            part.unlink()
        job.resume_note = (f"{len(stale)} part(s) of the previous run named map shards that are missing, truncated "
                           "or changed: dropped, and their images are scanned again")
    return job


def reference_set(job: ScanJob) -> ReferenceSet | None:
    """UniCAM's reference set: from ``reference_folder``, else drawn from the scanned dataset itself."""
    if not job.settings.unicam:
        return None
    return ReferenceSet.from_folder(job.reference_folder or job.dataset, n=job.settings.reference_n,
                                    seed=job.settings.seed, class_names=job.class_names)


def _identity(job: ScanJob, models) -> dict:
    return {"dataset": str(job.dataset.resolve()), "settings": job.settings.to_json(),
            "models": {role: [m.backend.info.sha256, m.layer] for role, m in models.items()},
            "reference": str(job.reference_folder.resolve()) if job.reference_folder else None}


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable scan manifest ({exc})") from exc


def _clear(out: Path) -> None:
    """Remove a previous scan's own files (manifest first, then tables, parts and maps); nothing else in
    the folder. A kill midway leaves parts without a manifest, which a rerun refuses without --overwrite,
    never a manifest saying "complete" over missing maps."""
    import shutil

    for name in (MANIFEST, "scan.parquet", "scan.csv"):
        if (out / name).exists():
            (out / name).unlink()
    for name in ("parts", "maps"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def write_manifest(job: ScanJob, models, reference, engine: dict, status: dict) -> Path:
    """The manifest: dataset, settings, models (SHA-256, format, backend, layer, preprocessing), the
    reference set, the engine, counts and package versions (METHODS §9)."""
    from ..comparison import NORMALISATION

    data = {
        "format": FORMAT, "identity": _identity(job, models), "dataset": str(job.dataset),
        "images": len(job.paths), "class_names": list(job.class_names), "label_note": job.label_note,
        "settings": job.settings.to_json(), "models": models_record(models),
        "target_rule": job.settings.target_rule, "seed": job.settings.seed,
        "reference": None if reference is None else {
            "source": reference.source, "seed": reference.seed, "n": reference.n, "hashes": reference.hashes,
            "variant": job.settings.unicam_variant},
        "measures": {
            "maps": "each model's CAM at its layer, raw after ReLU, on the image's pixel grid (NaN outside the "
                    "model's crop); maps/<key>/<maps_shard>.npy from maps_offset, grid_height × grid_width",
            "agreement": "T–S Pearson, Spearman and IoU of the top 20% over the pixels both crops cover",
            "energy": "share of the map's energy inside the object mask, over the pixels every model's crop covers",
            "pointing": "1 when the map's maximum over those pixels lies in the mask (tolerance 0)",
            "faithfulness": f"deletion and insertion AUC (Petsiuk et al.), {job.settings.faithfulness_steps} steps, "
                            f"{job.settings.faithfulness_baseline} baseline, at the model's input, target class "
                            "probability" if job.settings.faithfulness_steps else "not computed",
            "kl": "KL(T‖S) in nats of the softmax probabilities (clipped at 1e-12)",
            "normalisation": f"raw maps are stored; display uses {NORMALISATION}",
        },
        "engine": engine, **status, "versions": package_versions(), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = job.out / MANIFEST
    job.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, strict_json(data) + "\n")
    return path


def process_batch(job: ScanJob, items: Sequence[StreamItem], models: dict[str, ComparisonModel], reference,
                  cache: UniCamCache) -> list[ImageResult]:
    """Rows of one batch: unreadable images get a row with the reason, the rest are measured together."""
    return batch_results(job, items, models, explain_items(job, items, models, reference, cache))


def explain_items(job: ScanJob, items: Sequence[StreamItem], models: dict[str, ComparisonModel], reference,
                  cache: UniCamCache) -> BatchExplanations:
    """The models' work on the readable images of a batch (``batch_results`` makes their rows)."""
    good = [item for item in items if item.image is not None]
    return explain_batch(models, [item.image for item in good], [item.label for item in good], job.settings,
                         reference, cache)


def batch_results(job: ScanJob, items: Sequence[StreamItem], models: dict[str, ComparisonModel],
                  explained: BatchExplanations) -> list[ImageResult]:
    """Every item's row, in batch order; runs no model (see ``explain_items``)."""
    measured = iter(batch_rows(models, explained, job.settings))
    results = []
    for item in items:
        if item.image is None:
            result = ImageResult({"label": item.label, "error": str(item.error) if item.error else "not read"})
        else:
            result = next(measured)
        result.row.update(path=job.relative(item.path), file=str(item.path), sha256=item.sha256)
        results.append(result)
    return results


def write_results(job: ScanJob, results: Sequence[ImageResult]) -> Path:
    return write_batch(job.out, results, job.schema, job.map_keys)
