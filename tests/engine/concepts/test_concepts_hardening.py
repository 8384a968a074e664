"""A corrupt entry of ``kdx concepts --cache`` is computed again (and said so), never fatal, and the run
equals one with a clean cache (issue 31)."""
import json

import numpy as np
import torch
from PIL import Image

from conftest import make_cifar
from kdx_engine.cli import main


def _run(tmp_path, out, cache):
    return main(["concepts", "--student", str(tmp_path / "s.pth"), str(tmp_path / "images"), "--out", str(out),
                 "--grid", "4", "--draws", "4", "--steps", "3", "--cache", str(cache)])


def test_a_corrupt_cache_entry_is_computed_again(tmp_path, capsys):
    torch.save(make_cifar("resnet8", num_classes=3, seed=0).state_dict(), tmp_path / "s.pth")
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{k}.png")
    cache = tmp_path / "cache"
    assert _run(tmp_path, tmp_path / "first", cache) == 0
    entries = sorted(cache.glob("*.npz"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:40])  # cut short, as by a full disk
    entries[1].write_bytes(b"not a zip at all")
    capsys.readouterr()
    assert _run(tmp_path, tmp_path / "second", cache) == 0
    out = capsys.readouterr().out
    assert "2 map(s) in the cache cache/ were unreadable (corrupt or cut short) and are computed again" in out
    first = json.loads((tmp_path / "first" / "concepts.json").read_text())
    second = json.loads((tmp_path / "second" / "concepts.json").read_text())
    assert first["models"] == second["models"]
    for path in sorted((tmp_path / "first" / "entropy_maps").rglob("*.npy")):
        twin = tmp_path / "second" / path.relative_to(tmp_path / "first")
        np.testing.assert_array_equal(np.load(path), np.load(twin))
    assert len(list(cache.glob("*.npz"))) == 3 and all(np.load(p)["entropy"].shape == (4, 4) for p in cache.glob("*.npz"))
