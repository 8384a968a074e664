"""The default scan engine: in this process, batched, images decoded ahead on threads, torch on all
cores; a part file per batch, so Cancel (or a crash) loses at most the batch in flight."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..comparison import ComparisonModel, UniCamCache
from ..data.image_stream import image_batches
from ..jobs import Progress, report
from .job import ScanJob, process_batch, reference_set, write_manifest, write_results
from .table import finish_table


@dataclass(frozen=True)
class ScanSummary:
    """How a scan ended: rows in the table, images scanned now, skipped as done, unreadable, seconds."""

    table: Path
    csv: Path
    rows: int
    scanned: int
    skipped: int
    unreadable: int
    seconds: float
    engine: str


def run_scan(job: ScanJob, models: dict[str, ComparisonModel], batch_size: int = 32, workers: int | None = None,
             progress: Progress | None = None) -> ScanSummary:
    """Scan every image of ``job`` not done before; write parts as it goes, then the table and manifest."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    reference = reference_set(job)
    engine = {"name": "in-process", "batch_size": batch_size}
    write_manifest(job, models, reference, engine, {"complete": False})
    skip = skipper(job)
    todo = sum(1 for i in range(len(job.paths)) if not skip(i))
    cache, scanned, unreadable = UniCamCache(), 0, 0
    report(progress, 0.0, f"scanning {todo} images ({len(job.paths) - todo} done before)")
    for items in image_batches(job.paths, job.labels, batch_size, workers, skip):
        if progress is not None:
            progress.check()  # Cancel stops before the next batch; the parts written stay
        results = process_batch(job, items, models, reference, cache)
        write_results(job, results)
        scanned += len(results)
        unreadable += sum(1 for r in results if r.row.get("error"))
        report(progress, scanned / max(todo, 1), f"scanned {scanned}/{todo} images")
    return finish(job, models, reference, engine, scanned, len(job.paths) - todo, unreadable, start)


def skipper(job: ScanJob):
    """``skip(index)``: whether image ``index`` is in the table already with the same file hash."""
    from ..data.image_stream import file_sha256

    if not job.done:
        return lambda index: False
    done_paths = {path for path, _ in job.done}

    def skip(index: int) -> bool:
        relative = job.relative(job.paths[index])
        return relative in done_paths and (relative, file_sha256(job.paths[index])) in job.done

    return skip


def finish(job, models, reference, engine, scanned, skipped, unreadable, start) -> ScanSummary:
    table, csv, rows = finish_table(job.out, job.schema)
    seconds = time.perf_counter() - start
    write_manifest(job, models, reference, engine, {
        "complete": True, "rows": rows, "scanned_this_run": scanned, "skipped_as_done": skipped,
        "unreadable_this_run": unreadable, "seconds_this_run": round(seconds, 2)})
    return ScanSummary(table, csv, rows, scanned, skipped, unreadable, seconds, engine["name"])
