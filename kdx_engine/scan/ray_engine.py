"""The scan on a Ray cluster (the optional ``ray`` extra; Ray is imported here only): the images to scan
are a Ray dataset, one actor per worker holds the loaded models (loaded once per actor), ``map_batches``
runs the same batch work as the in-process engine, and Ray writes the rows as Parquet parts. Each actor
writes its batches' map shards into the scan folder itself, so with ``--ray ADDRESS`` the folder must be
on storage every node sees.

Actors ask for a fraction of a CPU: on a small cluster, an actor pool that asks for whole CPUs beside
Ray Data's read tasks waits forever for resources (tried with Ray 2.60 on 2 cores); the pool is sized
from the cluster's CPUs, and each actor's torch gets its share of the threads.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from ..comparison import UniCamCache
from ..data.image_stream import read_item
from ..messages import first_line
from .job import ScanJob, process_batch, reference_set, write_manifest
from .local_engine import ScanSummary, finish, skipper
from .models import ScanModels
from .table import PARTS, write_shards

CPU_SHARE = 0.75  # of the cluster's CPUs reserved by actors; the rest is left for Ray Data's tasks
CONNECT_TIMEOUT_S = 30.0


def reach_cluster(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """ValueError saying what to check when nothing answers at ``address`` (``host:port``, ``ray://host:port``)
    within ``timeout`` seconds: a closed port, an unknown host or a silent network fail here, not in
    ``ray.init``, which waits for minutes. ``auto`` (Ray finds the cluster itself) is not probed."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"--ray {address}: give the cluster's address as HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except socket.gaierror as exc:
        raise ValueError(f"--ray {address}: unknown host {host!r} ({exc.strerror or exc}); check the address") from exc
    except (TimeoutError, socket.timeout) as exc:
        raise ValueError(f"--ray {address}: nothing answered within {timeout:g} s; check the address, that the "
                         "cluster is running and that no firewall is in the way (--ray-timeout to wait longer)") from exc
    except OSError as exc:
        raise ValueError(f"--ray {address}: cannot connect ({exc.strerror or exc}); is a Ray cluster running "
                         "there (ray start --head)?") from exc


def check_ray() -> None:
    """Raise ValueError (bad input) when Ray is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"--ray needs Ray: pip install 'kdx[ray]' ({exc})") from exc


class ScanActor:
    """One Ray actor: loads the models once, then scans the batches it is given."""

    def __init__(self, job: ScanJob, spec: ScanModels, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.job, self.models = job, spec.load()
        self.reference, self.cache = reference_set(job), UniCamCache()

    def __call__(self, batch: dict):
        from pathlib import Path

        items = [read_item(int(i), Path(p), None if int(l) < 0 else int(l))
                 for i, p, l in zip(batch["index"], batch["path"], batch["label"])]
        results = process_batch(self.job, items, self.models, self.reference, self.cache)
        return write_shards(self.job.out, results, self.job.schema, self.job.map_keys)


def _join_hint() -> str:
    """What to check when joining a cluster fails. Ray sends a token to an address it is given only under
    RAY_AUTH_MODE=token, while clusters started with ``ray start`` require one (Ray ≥ 2.59); kdx does not
    send it on its own, since a token sent to the wrong address is a token given away."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return "Is it running, and is its token the one here (RAY_AUTH_TOKEN or ~/.ray/auth_token)?"
    return ("Is it running? A cluster started with `ray start` asks for its token: run kdx with "
            "RAY_AUTH_MODE=token, the token in ~/.ray/auth_token or RAY_AUTH_TOKEN.")


def pool_size(cpus: float) -> tuple[int, float, int]:
    """(actors, CPUs each asks for, torch threads each) for a cluster with ``cpus`` CPUs."""
    actors = max(1, int(cpus))
    share = max(0.1, round(CPU_SHARE * cpus / actors, 2))
    return actors, share, max(1, int(cpus // actors))


def run_scan_on_ray(job: ScanJob, spec: ScanModels, models, address: str | None = None, num_cpus: int | None = None,
                    batch_size: int = 32, connect_timeout: float = CONNECT_TIMEOUT_S) -> ScanSummary:
    """Scan the images of ``job`` not done before on Ray: a local cluster of ``num_cpus`` CPUs started here
    (default: all), or the cluster at ``address`` (reached within ``connect_timeout`` seconds); then the
    same table and manifest as in process."""
    import ray
    import ray.data

    check_ray()
    start, began = time.perf_counter(), time.time()
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            reach_cluster(address, connect_timeout)
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except ConnectionError as exc:
                raise ValueError(f"--ray {address}: cannot join the Ray cluster there ({first_line(exc)}). "
                                 + _join_hint()) from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = sys.stderr.isatty()
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        actors, share, threads = pool_size(cpus)
        engine = {"name": "ray", "address": address or "local", "cluster_cpus": cpus, "actors": actors,
                  "cpus_per_actor": share, "threads_per_actor": threads, "batch_size": batch_size,
                  "ray": ray.__version__}
        reference = reference_set(job)
        write_manifest(job, models, reference, engine, {"complete": False})
        skip = skipper(job)
        todo = [{"index": i, "path": str(path), "label": -1 if label is None else int(label)}
                for i, (path, label) in enumerate(zip(job.paths, job.labels)) if not skip(i)]
        scanned = unreadable = 0
        if todo:
            dataset = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo) // batch_size, 4 * actors)))
            rows = dataset.map_batches(ScanActor, fn_constructor_kwargs={"job": job, "spec": spec, "threads": threads},
                                       batch_size=batch_size, batch_format="numpy",
                                       compute=ray.data.ActorPoolStrategy(size=actors),
                                       num_cpus=share)
            (job.out / PARTS).mkdir(parents=True, exist_ok=True)
            rows.write_parquet(str(job.out / PARTS))
            scanned = len(todo)
            unreadable = _errors_in_parts(job.out / PARTS, since=began)
        return finish(job, models, reference, engine, scanned, len(job.paths) - len(todo), unreadable, start)
    finally:
        if started_here:
            ray.shutdown()


def _errors_in_parts(folder: Path, since: float) -> int:
    """Rows with an error in the part files written since ``since`` (this run's)."""
    import pyarrow.parquet as pq

    count = 0
    for part in folder.glob("*.parquet"):
        if part.stat().st_mtime >= since - 1.0:
            count += sum(1 for error in pq.read_table(part, columns=["error"]).column("error").to_pylist() if error)
    return count
