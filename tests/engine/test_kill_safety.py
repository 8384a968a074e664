"""Kill safety (issue 31): every command that writes, killed (SIGKILL) while it runs, leaves what was there
before or a complete new result, never a mix and never a half-written file under a final name; a rerun
succeeds and equals an uninterrupted run; ``kdx scan`` and ``kdx concepts --cache`` resume.

Each run is a process forked from one server that has imported the engine already (so a run costs its
work, not torch's import), running ``kdx_engine.cli.main`` as the ``kdx`` script does. A command's two
argument sets (``old`` and ``new``) give different results, so a mix of the two would show. Kill points
are seeded: a time within the command's measured run, or the moment its k-th write shows on disk.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from kdx_engine.atomic_files import TEMP_MARKER, is_temporary_name
from kdx_engine.bundled import DEMO_MODELS

SERVER = r"""
import json, os, sys, time, traceback
import kdx_engine.cli, kdx_engine.cams, kdx_engine.comparison, kdx_engine.comparison.export, kdx_engine.figures
import kdx_engine.scan, kdx_engine.metrics, kdx_engine.concepts.analysis, kdx_engine.zoo, kdx_engine.models
import kdx_gui.state.project
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.chdir(job["cwd"])
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            sys.argv = ["kdx", *job["argv"]]
            space = {"argv": job["argv"]}
            exec(job["code"], space)
            code = space.get("rc") or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status, "seconds": time.monotonic() - start}), flush=True)
"""
CLI = "from kdx_engine.cli import main\nrc = main(argv)"
SAVE_LOOP = """
from kdx_gui.state.project import Project, save_project
for i in range(int(argv[0]), int(argv[1])):
    save_project(Project(images=[f"/images/{i}/{k:05d}.png" for k in range(4000)], current=i), "project.kdx")
"""
VOLATILE = {"seconds", "written", "versions", "seconds_this_run", "scanned_this_run", "skipped_as_done",
            "unreadable_this_run", "seconds_per_map"}


@dataclass
class Run:
    rc: int | None  # exit status, None when killed
    seconds: float
    log: str
    killed: bool
    changes: int  # changes of the folder seen while it ran (when watched)


class Forker:
    """One server process (engine imported), forking a child per run; children are killed by their pid."""

    def __init__(self, tmp: Path):
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     bufsize=0, env=env)
        self.buffer, self.tmp, self.count = b"", tmp, 0
        assert self._line(timeout=300) == {"ready": True}

    def _line(self, timeout: float | None = None) -> dict | None:
        """The server's next message, or None when none came within ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if end is None else max(0.0, end - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, "the run server ended"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, argv, cwd: Path, code: str = CLI, kill=None) -> Run:
        """Run ``kdx argv`` in ``cwd``; ``kill(elapsed, changes)`` says when to SIGKILL it."""
        self.count += 1
        log = self.tmp / f"run{self.count}.log"
        watcher = _Watcher(cwd) if kill is not None else None
        self.proc.stdin.write((json.dumps({"argv": [str(a) for a in argv], "cwd": str(cwd), "log": str(log),
                                           "code": code}) + "\n").encode())
        pid, start = self._line(timeout=60)["pid"], time.monotonic()
        done = None
        while kill is not None and done is None:
            if kill(time.monotonic() - start, watcher.changes()):
                os.kill(pid, signal.SIGKILL)
                break
            done = self._line(timeout=0.002)
        done = done or self._line(timeout=900)
        status = done["status"]
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        return Run(None if killed else os.waitstatus_to_exitcode(status), done["seconds"], log.read_text(), killed,
                   watcher.changes() if watcher else 0)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class _Watcher:
    """Counts changes of a folder tree (entries, sizes, modification times), hidden entries included."""

    def __init__(self, root: Path):
        self.root, self.count = root, 0
        self.last = self._state()

    def _state(self):
        state = set()
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                try:
                    info = os.stat(os.path.join(folder, name), follow_symlinks=False)
                except OSError:
                    continue
                state.add((folder, name, info.st_size, info.st_mtime_ns, info.st_ino))
        return state

    def changes(self) -> int:
        now = self._state()
        if now != self.last:
            self.count, self.last = self.count + 1, now
        return self.count


def kill_at_time(seconds: float):
    return lambda elapsed, changes: elapsed >= seconds


def kill_at_write(k: int):
    return lambda elapsed, changes: changes >= k


def never(elapsed, changes) -> bool:
    return False


def kill_points(rng: random.Random, duration: float, writes: int, n: int) -> list[tuple[str, object]]:
    """``n`` kill points: times spread over the run (jittered within equal slices) and the k-th of the
    ``writes`` changes an uninterrupted run made on disk, alternating; a single point is a write mid-run."""
    points = []
    for i in range(n):
        if i % 2 == 1 or n == 1 and writes < 4:  # a single write: killed before it or after (time)
            t = duration * (i // 2 + rng.uniform(0.1, 0.9)) / max(n // 2, 1)
            points.append((f"at {t:.2f} s of {duration:.2f} s", kill_at_time(t)))
        else:
            slots = (n + 1) // 2
            share = rng.uniform(0.25, 0.75) if n == 1 else (i // 2 + rng.random()) / slots  # one: mid-run
            k = 1 + int(max(writes - 1, 1) * share)
            points.append((f"at write {k}", kill_at_write(k)))
    return points


# ------------------------------------------------------------------------------------------------ outputs

def _is_ours_temporary(name: str) -> bool:
    """KDX's temporaries and staging folders: ``.<name>.kdx-tmp-…``, the zoo's ``.<folder>.…`` staging and
    the scan table's ``.<table>.partial``."""
    return name.startswith(".") and (is_temporary_name(name) or TEMP_MARKER in name or name.endswith(".partial")
                                     or name.split(".")[1] in ("zoo_models", "zoo_samples"))


def _clean_json(value):
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def _content(path: Path):
    suffix = path.suffix
    if path.name.endswith(".kdx.json") or suffix in (".json", ".kdx"):
        return _clean_json(json.loads(path.read_text(encoding="utf-8")))
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    if suffix == ".png":
        from PIL import Image
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA")).astype(np.int16)
    if suffix == ".csv":
        return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    if suffix in (".pth", ".pt"):
        import torch
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.numpy() for k, v in state.items()} if isinstance(state, dict) else state
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path, skip=()) -> tuple[dict, list[str]]:
    """Every final file under ``root`` (relative path → comparable content) and the temporaries found."""
    files, temporaries = {}, []
    for folder, dirs, names in os.walk(root):
        folder = Path(folder)
        for name in [*dirs, *names]:
            if name.startswith("."):
                temporaries.append(str((folder / name).relative_to(root)))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (folder / d).relative_to(root).as_posix()
                         not in skip)
        for name in names:
            path = folder / name
            relative = path.relative_to(root).as_posix()
            if not name.startswith(".") and relative not in skip:
                files[relative] = _content(path)
    return files, temporaries


def scan_snapshot(root: Path, out: str = "scan") -> tuple[dict, list[str]]:
    """A scan folder as its rows (sorted by path, without their shard placement) with every map, the
    manifest, and the CSV's rows; parts and shards are how a scan got there, not what it holds."""
    import pyarrow.parquet as pq
    from kdx_engine.scan.table import read_map

    folder = root / out
    files, temporaries = snapshot(root, skip={f"{out}/parts", f"{out}/maps", f"{out}/scan.csv", f"{out}/scan.parquet"})
    if (folder / "scan.parquet").is_file():
        rows = sorted(pq.read_table(folder / "scan.parquet").to_pylist(), key=lambda row: row["path"])
        keys = sorted(p.name for p in (folder / "maps").iterdir()) if (folder / "maps").is_dir() else []
        for row in rows:
            for key in keys:
                row[f"map:{key}"] = read_map(folder, row, key)
            del row["maps_shard"], row["maps_offset"]
        files[f"{out}/scan.parquet"] = rows
        text = list(csv.DictReader(io.StringIO((folder / "scan.csv").read_text(encoding="utf-8"))))
        files[f"{out}/scan.csv"] = sorted(({k: v for k, v in r.items() if not k.startswith("maps_")} for r in text),
                                          key=lambda r: r["path"])
    return files, temporaries


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "iub" and b.dtype.kind in "iub":
            return bool(np.abs(a.astype(np.int64) - b.astype(np.int64)).max(initial=0) <= 2)  # overlays
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True))
    return a == b


def differing(a: dict, b: dict) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not same(a[k], b[k]))


# ------------------------------------------------------------------------------------------------ commands

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from kdx_engine.zoo import write_demo_dataset

    root = tmp_path_factory.mktemp("kill_inputs")
    write_demo_dataset(root / "few", n=4, split="test")
    write_demo_dataset(root / "two", n=2, split="test")
    write_demo_dataset(root / "many", n=32, split="test")
    return root


@pytest.fixture(scope="module")
def forker(tmp_path_factory):
    server = Forker(tmp_path_factory.mktemp("kill_logs"))
    yield server
    server.close()


def _models(*names):
    return [str(DEMO_MODELS / f"{name}.pth") for name in names]


def commands(inputs: Path) -> dict:
    """Per command: its old and new arguments (different results), the output's root-relative names to
    compare (``skip``: left out of the comparison) and whether it resumes."""
    teacher, student, base = _models("teacher", "student", "base")
    two, many = inputs / "two", inputs / "many"
    concepts = ["concepts", two, "--student", student, "--steps", "4", "--draws", "6",
                "--grid", "4",
                "--out", "concepts", "--cache", "cache", "--overwrite"]
    return {
        "explain": (["explain", two, "--model", teacher, "--out", "maps", "--overwrite"],
                    ["explain", two, "--model", student, "--out", "maps", "--overwrite"], ()),
        "export": (["export", two, "--teacher", teacher, "--student", student, "--out", "figure.png", "--overwrite"],
                   ["export", two, "--teacher", teacher, "--student", base, "--method", "gradcam++",
                    "--out", "figure.png", "--overwrite"], ()),
        "metrics": (["metrics", "--teacher", teacher, "--student", student, "--dataset", many, "--out", "metrics.json",
                     "--overwrite"],
                    ["metrics", "--teacher", teacher, "--student", base, "--dataset", many, "--out", "metrics.json",
                     "--overwrite"], ()),
        "concepts": ([*concepts, "--seed", "0"], [*concepts, "--seed", "1"], ("cache",)),
        "zoo build": (["zoo", "build", "--quick", "--out", "zoo_models", "--samples", "zoo_samples", "--overwrite"],
                      None, ()),
    }


def _scan_args(inputs: Path, *extra):
    teacher, student = _models("teacher", "student")
    return ["scan", inputs / "few", "--teacher", teacher, "--student", student, "--out", "scan", "--batch-size", "1",
            *extra]


def _check_state(name, point, files, temporaries, allowed: dict):
    odd = [t for t in temporaries if not _is_ours_temporary(Path(t).name)]
    assert not odd, f"{name}, killed {point}: files that are neither results nor KDX's temporaries: {odd}"
    matches = [label for label, expected in allowed.items() if not differing(files, expected)]
    if not matches and name == "explain" and "maps/manifest.json" not in files:
        # explain writes into the user's folder, so its maps cannot replace the old ones at once: they are
        # staged, the old manifest is removed, then each map is moved into place (milliseconds), then the
        # manifest written. Killed in between, no manifest claims the folder, and every file is whole.
        old, new = allowed.values()
        if all(any(k in v and same(files[k], v[k]) for v in (old, new)) for k in files):
            return "moving maps into place (no manifest)"
    assert matches, (f"{name}, killed {point}: the folder is neither of " + ", ".join(
        f"{label} (differs in {differing(files, expected)[:6]})" for label, expected in allowed.items()))
    return matches[0]


def kill_test(forker, tmp_path, inputs, name: str, kills: int, seed: int) -> list[str]:
    """Old output in place, then runs of the other argument set killed at seeded points, each followed by
    the state check and a rerun that must equal an uninterrupted run."""
    old, new, skip = commands(inputs)[name]
    argsets = [old, new or old]
    expected, duration, writes = [], [], []
    for i, argv in enumerate(argsets[:2 if new else 1]):  # the uninterrupted runs, each in its own folder
        folder = tmp_path / f"reference{i}"
        folder.mkdir()
        run = forker.run(argv, folder, kill=never)
        assert run.rc == 0, run.log
        expected.append(snapshot(folder, skip)[0])
        duration.append(run.seconds)
        writes.append(run.changes)
    assert new is None or differing(*expected), f"{name}: the two argument sets should give different results"
    expected *= 2 // len(expected)
    live = tmp_path / "reference0"  # holds the old result: the killed runs go there
    rng, report, current = random.Random(seed), [], 0
    for point, kill in kill_points(rng, min(duration), writes[-1], kills):  # min: load makes runs slower
        target = 1 - current if new is not None else 0
        if name == "concepts":  # maps cached by earlier runs would make the run too short to kill
            shutil.rmtree(live / "cache", ignore_errors=True)
        run = forker.run(argsets[target], live, kill=kill)
        files, temporaries = snapshot(live, skip)
        state = _check_state(name, point, files, temporaries, {"the previous result": expected[current],
                                                               "the new result": expected[target]})
        cached = _cache_entries(live / "cache")
        rerun = forker.run(argsets[target], live)
        assert rerun.rc == 0, f"{name}, rerun after a kill {point}:\n{rerun.log}"
        files, _ = snapshot(live, skip)
        assert not differing(files, expected[target]), f"{name}: rerun after a kill {point} differs"
        resumed = ""
        if name == "concepts":  # the maps the killed run finished are taken from the cache, not computed again
            assert {k: v for k, v in _cache_entries(live / "cache").items() if k in cached} == cached
            resumed = f", {len(cached)} cached maps reused"
        report.append(f"{name}: {'killed' if run.killed else 'finished before the kill'} {point}, left {state}; "
                      f"rerun {rerun.seconds:.1f} s{resumed}")
        current = target
    return report


def _cache_entries(folder: Path) -> dict:
    """The concepts cache's entries (name → inode and modification time), each checked to be a whole map."""
    entries = {}
    for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
        if entry.name.startswith("."):
            assert _is_ours_temporary(entry.name), entry
            continue
        assert _content(entry)["entropy"].shape == (4, 4), entry
        entries[entry.name] = (entry.stat().st_ino, entry.stat().st_mtime_ns)
    return entries


def scan_kill_test(forker, tmp_path, inputs, kills: int, seed: int) -> list[str]:
    """Scans killed in a new folder (the rerun resumes from the parts written) and, every other time, over
    a finished scan of other settings with --overwrite (the old scan stays whole until it is cleared)."""
    runs, expected = {}, {}
    for label, extra in (("old", ["--methods", "gradcam++"]), ("new", []))[2 - min(kills, 2):]:
        folder = tmp_path / f"reference_{label}"
        folder.mkdir()
        runs[label] = forker.run(_scan_args(inputs, *extra), folder, kill=never)
        assert runs[label].rc == 0, runs[label].log
        expected[label] = scan_snapshot(folder)[0]
    new_manifest = json.loads((tmp_path / "reference_new" / "scan" / "manifest.json").read_text())
    report = []
    for i, (point, kill) in enumerate(kill_points(random.Random(seed), runs["new"].seconds, runs["new"].changes,
                                                  kills)):
        live, over_old = tmp_path / f"live{i}", i % 2 == 1
        if over_old:
            shutil.copytree(tmp_path / "reference_old", live)
        else:
            live.mkdir()
        run = forker.run(_scan_args(inputs, *(["--overwrite"] if over_old else [])), live, kill=kill)
        files, temporaries = scan_snapshot(live)
        odd = [t for t in temporaries if not _is_ours_temporary(Path(t).name)]
        assert not odd, f"scan, killed {point}: files that are neither results nor KDX's temporaries: {odd}"
        manifest_path = live / "scan" / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
        ours = manifest is not None and manifest["identity"]["settings"] == new_manifest["identity"]["settings"]
        if manifest is not None and not ours:
            assert not differing(files, expected["old"]), f"scan, killed {point}: the old scan is not whole"
        elif manifest is not None and manifest["complete"]:
            assert not differing(files, expected["new"]), f"scan, killed {point}: a complete scan that differs"
        elif "scan/scan.parquet" in files:  # finished but for the manifest: the table is whole
            assert same(files["scan/scan.parquet"], expected["new"]["scan/scan.parquet"])
        done = _rows_in_parts(live / "scan") if ours else 0
        rerun = forker.run(_scan_args(inputs, *([] if ours or manifest is None else ["--overwrite"])), live)
        assert rerun.rc == 0, f"scan, rerun after a kill {point}:\n{rerun.log}"
        files, _ = scan_snapshot(live)
        assert not differing(files, expected["new"]), f"scan: rerun after a kill {point} differs"
        skipped = json.loads(manifest_path.read_text())["skipped_as_done"]
        assert skipped == done, f"scan, killed {point}: {done} image(s) were done, the rerun skipped {skipped}"
        report.append(f"scan{' over an old scan' if over_old else ''}: {'killed' if run.killed else 'finished'} "
                      f"{point}; rerun skipped {skipped} done image(s), {rerun.seconds:.1f} s")
    return report


def _rows_in_parts(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(part).num_rows for part in (folder / "parts").glob("*.parquet"))


def project_kill_test(forker, tmp_path, kills: int, seed: int) -> list[str]:
    """A process saving a project in a loop, killed at seeded writes: the file is always one whole version."""
    from kdx_gui.state.project import load_project

    folder, rng, report = tmp_path / "project", random.Random(seed), []
    folder.mkdir()
    assert forker.run([0, 1], folder, code=SAVE_LOOP).rc == 0
    for i in range(kills):
        k = rng.randint(2, 30)  # each save shows as a temporary, then its rename
        run = forker.run([1_000_000 * (i + 1), 1_000_000 * (i + 2)], folder, code=SAVE_LOOP, kill=kill_at_write(k))
        assert run.killed, run.log
        project = load_project(folder / "project.kdx")
        assert project.current >= 0 and project.images == [f"/images/{project.current}/{k:05d}.png"
                                                          for k in range(4000)], "a mix of two saves"
        names = [p.name for p in folder.iterdir() if p.name != "project.kdx"]
        assert all(is_temporary_name(name) for name in names), names
        report.append(f"project save: killed at write {k}, file holds save {project.current}; {len(names)} temporary "
                      "left (cleaned once stale)")
    return report


KILLS_DEFAULT = {"explain": 1, "export": 1, "metrics": 1, "concepts": 1, "zoo build": 1}


@pytest.mark.parametrize("name", list(KILLS_DEFAULT))
def test_a_killed_command_leaves_the_old_or_the_new_result_and_a_rerun_equals_an_uninterrupted_run(
        forker, tmp_path, inputs, name):
    print("\n".join(kill_test(forker, tmp_path, inputs, name, KILLS_DEFAULT[name], seed=31)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KILLS_DEFAULT))
def test_a_command_killed_at_many_points_never_leaves_a_mix(forker, tmp_path, inputs, name):
    print("\n".join(kill_test(forker, tmp_path, inputs, name, kills=6, seed=131)))


def test_a_killed_scan_resumes_to_the_uninterrupted_result(forker, tmp_path, inputs):
    print("\n".join(scan_kill_test(forker, tmp_path, inputs, kills=1, seed=31)))


@pytest.mark.slow
def test_a_scan_killed_at_many_points_resumes_and_never_breaks_an_old_scan(forker, tmp_path, inputs):
    print("\n".join(scan_kill_test(forker, tmp_path, inputs, kills=6, seed=131)))


def test_a_killed_project_save_leaves_a_whole_project(forker, tmp_path):
    print("\n".join(project_kill_test(forker, tmp_path, kills=2, seed=31)))


@pytest.mark.slow
def test_a_project_save_killed_many_times_leaves_a_whole_project(forker, tmp_path):
    print("\n".join(project_kill_test(forker, tmp_path, kills=20, seed=131)))
