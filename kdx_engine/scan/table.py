"""The scan's table: its columns (one fixed schema, so parts written by any engine agree), the part
files written as the scan goes, the map shards, and the final Parquet and CSV.

Layout of a scan folder::

    manifest.json              what was scanned, how, with which models (METHODS §9)
    parts/<name>.parquet       rows as they were finished (an interrupted scan keeps them)
    maps/<key>/<shard>.npy     float32 maps of a batch, flattened and concatenated; a row's
                               ``maps_shard`` and ``maps_offset`` find its map of every key
    scan.parquet, scan.csv     every row, one per image (the latest where an image was rescanned)
"""
from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..atomic_files import atomic_write_bytes
from ..messages import printable
from ..roles import ROLES, UNICAM_KEYS
from .measures import ImageResult, ScanSettings, column_name, map_key

PARTS, MAPS = "parts", "maps"
TABLE, CSV = "scan.parquet", "scan.csv"


def table_schema(roles: Sequence[str], settings: ScanSettings, num_classes: int) -> pa.Schema:
    """Every column of a scan of models in ``roles`` with ``settings``, in order."""
    fields = [("path", pa.string()), ("file", pa.string()), ("sha256", pa.string()), ("error", pa.string()),
              ("label", pa.int64()), ("label_name", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
              ("has_mask", pa.bool_()), ("mask_share", pa.float64()), ("notes", pa.string()),
              ("grid_height", pa.int64()), ("grid_width", pa.int64()), ("maps_shard", pa.string()),
              ("maps_offset", pa.int64())]
    k = min(settings.top_k, num_classes)
    for role in (r for r in ROLES if r in roles):
        fields += [(f"{role}_predicted", pa.int64()), (f"{role}_predicted_name", pa.string()),
                   (f"{role}_confidence", pa.float64()), (f"{role}_correct", pa.bool_())]
        for rank in range(1, k + 1):
            fields += [(f"{role}_top{rank}_class", pa.int64()), (f"{role}_top{rank}_prob", pa.float64())]
    pair = "teacher" in roles and "student" in roles
    if pair:
        fields.append(("kl_teacher_student", pa.float64()))
    for method in settings.methods:
        for role in (r for r in ROLES if r in roles):
            key = map_key(method, role)
            fields += [(f"{key}_target", pa.int64()), (f"{key}_note", pa.string()), (f"{key}_energy", pa.float64()),
                       (f"{key}_pointing", pa.float64())]
            if settings.faithfulness_steps > 0:
                fields += [(f"{key}_deletion_auc", pa.float64()), (f"{key}_insertion_auc", pa.float64())]
        if pair:
            prefix = f"{column_name(method)}_ts"
            fields += [(f"{prefix}_pearson", pa.float64()), (f"{prefix}_spearman", pa.float64()),
                       (f"{prefix}_top_iou", pa.float64()), (f"{prefix}_note", pa.string())]
    if settings.unicam:
        for key in UNICAM_KEYS:
            fields += [(f"unicam_{key}_note", pa.string()), (f"unicam_{key}_score", pa.float64()),
                       (f"unicam_{key}_energy", pa.float64())]
    return pa.schema(fields)


def map_keys(roles: Sequence[str], settings: ScanSettings) -> list[str]:
    """The maps a scan saves per image, in order."""
    if not settings.save_maps:
        return []
    keys = [map_key(method, role) for method in settings.methods for role in ROLES if role in roles]
    return keys + ([f"unicam_{key}" for key in UNICAM_KEYS] if settings.unicam else [])


def write_batch(folder: Path, results: Sequence[ImageResult], schema: pa.Schema, keys: Sequence[str]) -> Path:
    """Write one batch's map shards and then its part file (so a part never names a missing shard)."""
    table = write_shards(folder, results, schema, keys)
    (folder / PARTS).mkdir(parents=True, exist_ok=True)
    path = folder / PARTS / f"{uuid.uuid4().hex[:16]}.parquet"
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue().to_pybytes())
    return path


def write_shards(folder: Path, results: Sequence[ImageResult], schema: pa.Schema, keys: Sequence[str]) -> pa.Table:
    """Write the batch's maps, one shard per key, and return its rows (which name the shard) as a table.
    A shard is named by the hash of its files' bytes (``shard_name``), so a resume can tell a missing,
    truncated or replaced shard from the one its rows were written with."""
    offset = 0
    buffers: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    placed = []
    for result in results:
        row = result.row
        height, width = row.get("grid_height"), row.get("grid_width")
        if row.get("error") is not None or not keys or height is None:
            continue
        for key in keys:
            values = result.maps.get(key)
            if values is None:
                values = np.full((height, width), np.nan, dtype=np.float32)
            buffers[key].append(values.astype(np.float32, copy=False).ravel())
        placed.append((row, offset))
        offset += height * width
    if offset:
        files = {key: _npy_bytes(np.concatenate(arrays)) for key, arrays in buffers.items()}
        shard = shard_name(files.values())
        for key, data in files.items():
            (Path(folder) / MAPS / key).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(Path(folder) / MAPS / key / f"{shard}.npy", data)
        for row, start in placed:
            row["maps_shard"], row["maps_offset"] = shard, start
    return rows_table([result.row for result in results], schema)


def shard_name(files) -> str:
    """The name of a shard whose files (one per map key, in key order) hold these bytes."""
    digest = hashlib.sha256()
    for data in files:
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:32]


def rows_table(rows: Iterable[dict], schema: pa.Schema) -> pa.Table:
    """Rows (column → value, missing columns null) as a table of ``schema``; NaN stays NaN; text made
    printable (a file name that is not UTF-8 keeps its other bytes as ``\\xe9``)."""
    return pa.Table.from_pylist([{name: _cell(row.get(name)) for name in schema.names} for row in rows],
                                schema=schema)


def _cell(value):
    return printable(value) if isinstance(value, str) else value


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def part_files(folder: Path) -> list[Path]:
    return sorted((Path(folder) / PARTS).glob("*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))


def done_images(folder: Path, keys: Sequence[str]) -> tuple[set[tuple[str, str]], list[Path]]:
    """(path, sha256) of every image already in a part of ``folder`` (rows without a hash are retried),
    and the stale parts: those naming a map shard (of ``keys``) that is missing, truncated or replaced;
    their images are not done."""
    done, stale = set(), []
    for part in part_files(folder):
        if not _shards_intact(folder, part, keys):
            stale.append(part)
            continue
        table = pq.read_table(part, columns=["path", "sha256"])
        for path, sha in zip(table.column("path").to_pylist(), table.column("sha256").to_pylist()):
            if sha:
                done.add((path, sha))
    return done, stale


def _shards_intact(folder: Path, part: Path, keys: Sequence[str]) -> bool:
    """Whether every map shard the part's rows name holds the bytes it is named after."""
    try:
        shards = set(pq.read_table(part, columns=["maps_shard"]).column("maps_shard").drop_null().to_pylist())
    except (OSError, pa.ArrowException):
        return False
    for shard in shards:
        paths = [Path(folder) / MAPS / key / f"{shard}.npy" for key in keys]
        if not all(path.is_file() for path in paths) or shard_name(p.read_bytes() for p in paths) != shard:
            return False
    return True


def finish_table(folder: Path, schema: pa.Schema, paths: set[str]) -> tuple[Path, Path, int]:
    """Merge the parts into ``scan.parquet`` and ``scan.csv``, one row per image path of ``paths`` (its
    latest row; rows of images no longer in the dataset are left out), in the order the parts were
    written; streamed part by part, so memory does not grow with the images."""
    folder = Path(folder)
    parts = part_files(folder)
    latest: dict[str, tuple[int, int]] = {}
    for p, part in enumerate(parts):
        for r, path in enumerate(pq.read_table(part, columns=["path"]).column("path").to_pylist()):
            if path in paths:
                latest[path] = (p, r)
    keep: dict[int, list[int]] = {}
    for p, r in latest.values():
        keep.setdefault(p, []).append(r)
    parquet_tmp, csv_tmp = folder / f".{TABLE}.partial", folder / f".{CSV}.partial"
    with pq.ParquetWriter(parquet_tmp, schema) as writer, pa.OSFile(str(csv_tmp), "wb") as sink:
        csv_writer = pa_csv.CSVWriter(sink, schema)
        for p, part in enumerate(parts):
            if p not in keep:
                continue
            table = pq.read_table(part).cast(schema).take(sorted(keep[p]))
            writer.write_table(table)
            csv_writer.write_table(table)
        csv_writer.close()
    parquet_tmp.replace(folder / TABLE)
    csv_tmp.replace(folder / CSV)
    return folder / TABLE, folder / CSV, len(latest)


def read_map(folder: Path, row: dict, key: str) -> np.ndarray | None:
    """Map ``key`` of a table row as a grid_height × grid_width float32 array (None when not saved)."""
    shard, offset = row.get("maps_shard"), row.get("maps_offset")
    if not shard or offset is None:
        return None
    path = Path(folder) / MAPS / key / f"{shard}.npy"
    if not path.is_file():
        return None
    height, width = int(row["grid_height"]), int(row["grid_width"])
    values = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.array(values[int(offset):int(offset) + height * width]).reshape(height, width)


def read_columns(folder: Path) -> dict[str, list]:
    """A finished scan's table as column name → values (the window's table model reads this)."""
    path = Path(folder) / TABLE
    if not path.is_file():
        raise ValueError(f"{folder}: no {TABLE} here (not a finished scan folder)")
    return pq.read_table(path).to_pydict()
