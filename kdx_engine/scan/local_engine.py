"""The default scan engine: in this process, batched, torch on all cores. Three stages overlap: threads
decode the next batch while the models run on this one, and one thread makes and writes the previous
batch's rows (placement, map measures, parts and shards: no model runs there). A part file per batch,
so Cancel (or a crash) loses at most the batch whose models are running."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..comparison import ComparisonModel, UniCamCache
from ..data.image_stream import image_batches
from ..jobs import Progress, report
from .job import ScanJob, batch_results, explain_items, reference_set, write_manifest, write_results
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
    cache, tally = UniCamCache(), _Tally(todo, progress)
    report(progress, 0.0, f"scanning {todo} images ({len(job.paths) - todo} done before)")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdx-scan-rows") as rows:
        pending = None  # the previous batch's rows, made and written while this batch's models run
        for items in image_batches(job.paths, job.labels, batch_size, workers, skip):
            if progress is not None:
                progress.check()  # Cancel stops before the next batch; the parts written (and in hand) stay
            explained = explain_items(job, items, models, reference, cache)
            if pending is not None:
                tally.add(pending.result())  # an error on the rows thread stops the scan here
            pending = rows.submit(_write_rows, job, items, models, explained)
        if pending is not None:
            tally.add(pending.result())
    return finish(job, models, reference, engine, tally.scanned, len(job.paths) - todo, tally.unreadable, start)


@dataclass
class _Tally:
    """Images scanned (and unreadable among them) so far, reported as the scan's progress."""

    todo: int
    progress: Progress | None
    scanned: int = 0
    unreadable: int = 0

    def add(self, results) -> None:
        self.scanned += len(results)
        self.unreadable += sum(1 for r in results if r.row.get("error"))
        report(self.progress, self.scanned / max(self.todo, 1), f"scanned {self.scanned}/{self.todo} images")


def _write_rows(job: ScanJob, items, models, explained) -> list:
    results = batch_results(job, items, models, explained)
    write_results(job, results)
    return results


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
    table, csv, rows = finish_table(job.out, job.schema, {job.relative(path) for path in job.paths})
    seconds = time.perf_counter() - start
    write_manifest(job, models, reference, engine, {
        "complete": True, "rows": rows, "scanned_this_run": scanned, "skipped_as_done": skipped,
        "unreadable_this_run": unreadable, "seconds_this_run": round(seconds, 2)})
    return ScanSummary(table, csv, rows, scanned, skipped, unreadable, seconds, engine["name"])
