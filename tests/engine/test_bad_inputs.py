"""Bad and unusual inputs through the real command line (issue 11): every one ends in exit code 2 with
one ``kdx: error:`` line naming the file, no traceback, nothing else on stderr, and no new output.

Each case builds its input in a fresh folder and returns the ``kdx`` arguments, the file name the
message must name, and the output folder that must stay empty.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from conftest import make_cifar
from kdx_engine.cli import main

sys.path.insert(0, str(Path(__file__).parent / "models"))  # the ONNX builders beside the model tests
from onnx_exports import tiny_onnx  # noqa: E402

CASES: dict[str, object] = {}
XFAIL: dict[str, str] = {}


def case(name: str, xfail: str | None = None):
    def register(build):
        CASES[name] = build
        if xfail:
            XFAIL[name] = xfail
        return build
    return register


# --- shared pieces --------------------------------------------------------------------------------

def _resnet8_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return make_cifar("resnet8", num_classes=3, seed=seed).state_dict()


def _good_model(folder: Path, name: str = "model.pth") -> Path:
    path = folder / name
    torch.save(_resnet8_state(), path)
    return path


def _png(path: Path, height: int = 32, width: int = 32) -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _info(path: Path, named: str | None = None):
    return ["info", str(path)], named or path.name, None


def _explain(model: Path, image: Path, folder: Path, named: str, *extra: str):
    out = folder / "out"
    return ["explain", "--method", "gradcam", "--model", str(model), str(image), "--out", str(out), *extra], named, out


def _safetensors(path: Path, header, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


class _Harmless:
    """Pickles as a call of a function: a file naming code to run (here harmless)."""

    def __reduce__(self):
        return (os.getcwd, ())


# --- model files (kdx info) -----------------------------------------------------------------------

@case("empty .pth")
def _(d):
    (d / "empty.pth").write_bytes(b"")
    return _info(d / "empty.pth")


@case("text in a .pth")
def _(d):
    (d / "notes.pth").write_text("hello, I am text\n" * 10)
    return _info(d / "notes.pth")


@case("random bytes .pth")
def _(d):
    (d / "noise.pth").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return _info(d / "noise.pth")


@case("truncated checkpoint")
def _(d):
    path = _good_model(d, "cut.pth")
    path.write_bytes(path.read_bytes()[:5000])
    return _info(path)


@case("directory as model")
def _(d):
    (d / "folder.pth").mkdir()
    return _info(d / "folder.pth")


@case("missing model file")
def _(d):
    return _info(d / "missing.pth")


@case("image dropped as model")
def _(d):
    return _info(_png(d / "photo.png"))


@case("state_dict with an .onnx extension")
def _(d):
    path = d / "weights.onnx"
    torch.save(_resnet8_state(), path)
    return _info(path)


@case("zip that is not a checkpoint")
def _(d):
    with zipfile.ZipFile(d / "archive.pth", "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return _info(d / "archive.pth")


@case("pickle naming code to run (untrusted)")
def _(d):
    torch.save({"model": _Harmless()}, d / "evil.pth")
    return _info(d / "evil.pth")


@case("torch.save of a list")
def _(d):
    torch.save([1, 2, 3], d / "list.pth")
    return _info(d / "list.pth")


@case("torch.save of a dict without tensors")
def _(d):
    torch.save({"epoch": 3, "lr": 0.1}, d / "dict.pth")
    return _info(d / "dict.pth")


@case("plain pickle of an int")
def _(d):
    (d / "int.pth").write_bytes(pickle.dumps(5))
    return _info(d / "int.pth")


@case("plain pickle of a list")
def _(d):
    (d / "plain.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    return _info(d / "plain.pkl")


@case("state_dict of an unknown architecture")
def _(d):
    torch.save({"w": torch.zeros(3, 3)}, d / "odd.pth")
    return _info(d / "odd.pth")


@case("NaN weights in a state_dict")
def _(d):
    state = _resnet8_state()
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, d / "nan.pth")
    return _info(d / "nan.pth")


@case("inf weights in a safetensors file")
def _(d):
    state = _resnet8_state()
    state["conv1.weight"][0, 0, 0, 0] = float("inf")
    save_file(state, str(d / "inf.safetensors"))
    return _info(d / "inf.safetensors")


@case("NaN weights in TorchScript")
def _(d):
    module = make_cifar("resnet8", num_classes=3)
    with torch.no_grad():
        module.fc.bias[0] = float("nan")
    torch.jit.script(module).save(str(d / "nan_script.pt"))
    return _info(d / "nan_script.pt")


@case("safetensors of 2 bytes")
def _(d):
    (d / "tiny.safetensors").write_bytes(b"{}")
    return _info(d / "tiny.safetensors")


@case("safetensors with an absurd header length")
def _(d):
    return _info(_safetensors(d / "huge.safetensors", {}, length=2**63))


@case("safetensors header length past the end")
def _(d):
    return _info(_safetensors(d / "short.safetensors", {}, length=1000))


@case("safetensors header not JSON")
def _(d):
    return _info(_safetensors(d / "badjson.safetensors", b"{not json"))


@case("safetensors header not a dict")
def _(d):
    return _info(_safetensors(d / "list.safetensors", [1, 2, 3]))


@case("safetensors offsets past the end")
def _(d):
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1_000_000]}}
    return _info(_safetensors(d / "offsets.safetensors", header, b"\0" * 16))


@case("safetensors unknown dtype")
def _(d):
    header = {"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}}
    return _info(_safetensors(d / "dtype.safetensors", header, b"\0" * 16))


@case("safetensors without tensors")
def _(d):
    return _info(_safetensors(d / "nothing.safetensors", {"__metadata__": {"format": "pt"}}))


@case("fake .pt2 of random bytes")
def _(d):
    (d / "fake.pt2").write_bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return _info(d / "fake.pt2")


@case("fake .pt2 zip that is not an export")
def _(d):
    with zipfile.ZipFile(d / "zip.pt2", "w") as archive:
        archive.writestr("hello.txt", "hi")
    return _info(d / "zip.pt2")


@case("fake .pt2 zip with an export marker")
def _(d):
    with zipfile.ZipFile(d / "marked.pt2", "w") as archive:
        archive.writestr("archive/archive_format", "pt2")
        archive.writestr("archive/version", "1")
    return _info(d / "marked.pt2")


@case("ONNX file of text")
def _(d):
    (d / "notes.onnx").write_text("these are my notes, not a model\n" * 20)
    return _info(d / "notes.onnx")


@case("truncated ONNX file")
def _(d):
    path = tiny_onnx(d / "cut.onnx")
    path.write_bytes(path.read_bytes()[:300])
    return _info(path)


@case("NaN initializer in ONNX")
def _(d):
    import onnx
    from onnx import numpy_helper

    path = tiny_onnx(d / "nan.onnx")
    model = onnx.load(str(path))
    weights = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, 0, 0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, "W"))
    onnx.save(model, str(path))
    return _info(path)


def _external_onnx(d: Path, location: str) -> Path:
    import onnx

    path = tiny_onnx(d / "external.onnx")
    onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True, location="weights.data", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(path))
    return path


@case("ONNX external data with a NUL byte")
def _(d):
    return _info(_external_onnx(d, "weights\x00.data"))


@case("ONNX external data outside the folder")
def _(d):
    return _info(_external_onnx(d, "../outside.data"))


@case("ONNX external data missing")
def _(d):
    return _info(_external_onnx(d, "gone.data"))


# --- sidecars -------------------------------------------------------------------------------------

def _sidecar_case(name: str, text: str):
    @case(f"sidecar {name}")
    def build(d):
        model = _good_model(d)
        (d / "model.pth.kdx.json").write_text(text)
        return _info(model, "model.pth.kdx.json")
    return build


for _field, _value in [("input_size", 0), ("input_size", -3), ("input_size", 2.5), ("input_size", "224"),
                       ("input_size", True), ("input_size", 100000), ("resize", "256"), ("resize", 0),
                       ("mean", [0.5, 0.5]), ("std", [0.0, 1.0, 1.0]), ("class_names", "abc"),
                       ("class_names", [1, 2, 3])]:
    _sidecar_case(f"{_field}={_value!r}", json.dumps({"input_size": 32, _field: _value}))
_sidecar_case("mean=NaN", '{"input_size": 32, "mean": [NaN, 0.5, 0.5]}')
_sidecar_case("not an object", "[1, 2, 3]")
_sidecar_case("bad JSON", "{input_size: 32")
_sidecar_case("class count mismatch", json.dumps({"input_size": 32, "class_names": ["a", "b"]}))


# --- images and layers (kdx explain) --------------------------------------------------------------

@case("truncated image")
def _(d):
    path = _png(d / "cut.png", 64, 64)
    path.write_bytes(path.read_bytes()[:200])
    return _explain(_good_model(d), path, d, "cut.png")


@case("non-image file with an image extension")
def _(d):
    (d / "text.png").write_text("not an image")
    return _explain(_good_model(d), d / "text.png", d, "text.png")


@case("zero-byte image")
def _(d):
    (d / "zero.jpg").write_bytes(b"")
    return _explain(_good_model(d), d / "zero.jpg", d, "zero.jpg")


@case("missing image")
def _(d):
    return _explain(_good_model(d), d / "nowhere.png", d, "nowhere.png")


@case("1x5000 strip under a resize preset")
def _(d):
    model = _good_model(d)
    (d / "model.pth.kdx.json").write_text(json.dumps({"input_size": 32, "resize": 36}))
    return _explain(model, _png(d / "strip.png", 1, 5000), d, "strip.png")


@case("resize needing too many pixels")
def _(d):
    model = _good_model(d)
    (d / "model.pth.kdx.json").write_text(json.dumps({"input_size": 32, "resize": 2048}))
    return _explain(model, _png(d / "wide.png", 40, 1000), d, "wide.png")


@case("unknown layer (PyTorch)")
def _(d):
    return _explain(_good_model(d), _png(d / "a.png"), d, "model.pth", "--layer", "nope")


@case("unknown layer (TorchScript)")
def _(d):
    path = d / "script.pt"
    torch.jit.script(make_cifar("resnet8", num_classes=3)).save(str(path))
    (d / "script.pt.kdx.json").write_text(json.dumps({"input_size": 32}))
    return _explain(path, _png(d / "a.png"), d, "script.pt", "--layer", "nope")


@case("unknown layer (ONNX)")
def _(d):
    return _explain(tiny_onnx(d / "tiny.onnx"), _png(d / "a.png", 8, 8), d, "tiny.onnx", "--layer", "nope")


@case("ONNX head with a Loop (no gradient)")
def _(d):
    return _explain(tiny_onnx(d / "loop.onnx", "loop"), _png(d / "a.png", 8, 8), d, "loop.onnx", "--layer", "relu")


@case("ONNX head with a contrib op (no gradient)")
def _(d):
    return _explain(tiny_onnx(d / "fused.onnx", "contrib"), _png(d / "a.png", 8, 8), d, "fused.onnx",
                    "--layer", "relu")


class _NaNLogits(nn.Module):
    """Finite weights, NaN logits: log of a negative number."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3))) + torch.log(-torch.ones(1))


@case("NaN logits from finite weights")
def _(d):
    path = d / "nanlogits.pt"
    torch.jit.script(_NaNLogits().eval()).save(str(path))
    (d / "nanlogits.pt.kdx.json").write_text(json.dumps({"input_size": 16}))
    return _explain(path, _png(d / "a.png"), d, "nanlogits.pt", "--layer", "conv")


# --- special files and structure bombs (issue 32) ------------------------------------------------

def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


@case("FIFO as model")
def _(d):
    return _info(_fifo(d / "pipe.pth"))


@case("link to /dev/zero as model")
def _(d):
    return _info(_link(d / "zero.pth", "/dev/zero"))


@case("link to /dev/urandom as ONNX model")
def _(d):
    return _info(_link(d / "random.onnx", "/dev/urandom"))


@case("sidecar linked to /dev/zero")
def _(d):
    path = _good_model(d)
    _link(d / "model.pth.kdx.json", "/dev/zero")
    return ["info", str(path)], "model.pth.kdx.json", None


@case("sidecar that is a FIFO")
def _(d):
    path = _good_model(d)
    _fifo(d / "model.pth.kdx.json")
    return ["info", str(path)], "model.pth.kdx.json", None


@case("sidecar of 100,000 nested brackets")
def _(d):
    path = _good_model(d)
    (d / "model.pth.kdx.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["info", str(path)], "model.pth.kdx.json", None


@case("sidecar asking for 1 GB per image")
def _(d):
    path = _good_model(d)
    (d / "model.pth.kdx.json").write_text(json.dumps({"input_size": 4096, "resize": 8192}))
    return ["info", str(path)], "model.pth.kdx.json", None


@case("oversized sidecar")
def _(d):
    path = _good_model(d)
    (d / "model.pth.kdx.json").write_text('{"input_size": 32, "notes": "' + "x" * 2_000_000 + '"}')
    return ["info", str(path)], "model.pth.kdx.json", None


@case("FIFO as the only image")
def _(d):
    return _explain(_good_model(d), _fifo(d / "pipe.png"), d, "pipe.png")


@case("link to /dev/zero as the only image")
def _(d):
    return _explain(_good_model(d), _link(d / "zero.png", "/dev/zero"), d, "zero.png")


@case("FIFO as --embeddings")
def _(d):
    model = _good_model(d)
    (d / "data" / "a").mkdir(parents=True)
    for k in range(3):
        _png(d / "data" / "a" / f"{k}.png")
    out = d / "out"
    return (["metrics", "--teacher", str(model), "--student", str(model), "--dataset", str(d / "data"),
             "--embeddings", str(_fifo(d / "emb.npy")), "--out", str(out / "m.json")], "emb.npy", out)


@case("ViT whose position embedding implies 2560 px")
def _(d):
    import timm

    with torch.device("meta"):
        shapes = timm.create_model("deit_tiny_patch16_224", num_classes=3, img_size=2560).state_dict()
    state = {k: torch.zeros(v.shape) for k, v in shapes.items()}
    torch.save(state, d / "vit.pth")
    return _info(d / "vit.pth")


# --- kdx concepts: checkpoints that are not, sizes that cannot fit (issue 31) ----------------------

def _concepts(d: Path, *extra: str, named: str):
    model = _good_model(d)
    (d / "images").mkdir()
    _png(d / "images" / "a.png")
    _png(d / "images" / "b.png")
    out = d / "out"
    return (["concepts", "--student", str(model), str(d / "images"), "--out", str(out), "--grid", "4",
             "--draws", "4", "--steps", "2", *extra], named, out)


def _checkpoints(d: Path, second: bytes) -> Path:
    folder = d / "run"
    folder.mkdir()
    torch.save(_resnet8_state(), folder / "epoch_1.pth")
    (folder / "epoch_2.pth").write_bytes(second)
    return folder


for _name, _bytes in (("text", b"hello, I am text\n" * 10), ("empty file", b""),
                      ("random bytes", np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
                      ("copy of a system file", (Path("/etc/services").read_bytes() if Path("/etc/services").is_file()
                                                 else b"ftp 21/tcp\n" * 400))):
    def _builder(d, _bytes=_bytes):
        folder = _checkpoints(d, _bytes)
        return _concepts(d, "--checkpoints", f"student={folder}", named="epoch_2.pth")
    case(f"concepts checkpoint: {_name}")(_builder)


@case("concepts --draws that cannot fit in memory")
def _(d):
    return _concepts(d, "--draws", "100000000", named="100,000,000 noise draws")


@case("concepts --grid finer than the input")
def _(d):
    return _concepts(d, "--grid", "100000", named="100000×100000 concept grid")


@case("scan --ray at an address where nothing listens")
def _(d):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = _good_model(d)
    (d / "data" / "a").mkdir(parents=True)
    _png(d / "data" / "a" / "0.png")
    out = d / "out"
    return (["scan", str(d / "data"), "--teacher", str(model), "--student", str(model), "--out", str(out),
             "--ray", f"127.0.0.1:{port}", "--ray-timeout", "5"], f"127.0.0.1:{port}", out)


def _every_command(d: Path, model: Path):
    """Each command that loads models, with ``model`` in its first model option."""
    (d / "data" / "a").mkdir(parents=True)
    _png(d / "data" / "a" / "0.png")
    _png(d / "data" / "a" / "1.png")
    good, image, data, out = str(_good_model(d, "good.pth")), str(d / "data" / "a" / "0.png"), str(d / "data"), d / "out"
    return out, {
        "explain": ["explain", "--model", str(model), image, "--out", str(out)],
        "export": ["export", "--teacher", str(model), "--student", good, image, "--out", str(out / "f.png")],
        "scan": ["scan", data, "--teacher", good, "--student", str(model), "--out", str(out)],
        "metrics": ["metrics", "--teacher", good, "--student", str(model), "--dataset", data, "--out",
                    str(out / "m.json")],
        "concepts": ["concepts", "--student", str(model), data, "--out", str(out), "--grid", "4"],
    }


for _command in ("explain", "export", "scan", "metrics", "concepts"):
    for _kind, _make in (("FIFO", lambda path: _fifo(path)), ("link to /dev/zero", lambda path: _link(path, "/dev/zero"))):
        def _builder(d, _command=_command, _make=_make):
            model = _make(d / "hostile.pth")
            out, argv = _every_command(d, model)
            return argv[_command], "hostile.pth", out
        case(f"{_command}: model is a {_kind}")(_builder)


# --- the test -------------------------------------------------------------------------------------

def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _params():
    for name in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else []
        yield pytest.param(name, id=name, marks=marks)


def test_there_are_at_least_thirty_input_classes():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(_params()))
def test_bad_input_is_one_line_naming_the_file_and_exit_2(name, tmp_path, capfd):
    folder = tmp_path / "case"
    folder.mkdir()
    argv, named, out = CASES[name](folder)
    capfd.readouterr()
    before = _listing(folder)
    code = main(argv)
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert code == 2, captured.err
    # the error, a hint on what to do, and notes on how the models were read (preprocessing fallbacks)
    assert lines and all(line.startswith(("kdx: ", "note: ")) for line in lines), captured.err
    errors = [line for line in lines if line.startswith("kdx: error: ")]
    assert len(errors) == 1, captured.err
    assert named in captured.err, captured.err
    assert _listing(folder) == before, "new files were written"
    assert out is None or not out.exists() or not any(out.iterdir())


# --- atomic writes: permissions and temporaries left by a killed write --------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask_and_keep_a_replaced_files_mode(tmp_path, umask):
    from kdx_engine.atomic_files import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        (tmp_path / "kept.json").write_text("old")
        os.chmod(tmp_path / "kept.json", 0o640)
        atomic_write_text(tmp_path / "kept.json", "new")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "kept.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "kept.json").read_text() == "new"


def test_stale_temporaries_of_a_killed_write_are_removed_and_nothing_else(tmp_path):
    from kdx_engine.atomic_files import atomic_write_text, clean_stale_temporaries, is_temporary_name

    stale, fresh = tmp_path / ".maps.npy.kdx-tmp-a1b2c3d4", tmp_path / ".manifest.json.kdx-tmp-zz99yy88"
    others = [tmp_path / ".maps.npy.a1b2c3d4", tmp_path / "maps.npy.kdx-tmp-a1b2c3d4", tmp_path / ".hidden"]
    for path in (stale, fresh, *others):
        path.write_text("x")
    for path in (stale, *others):
        os.utime(path, (0, 0))
    atomic_write_text(tmp_path / "result.json", "{}")  # the first write into a folder cleans it
    assert not stale.exists() and fresh.exists() and all(path.exists() for path in others)
    assert clean_stale_temporaries(tmp_path, older_than_s=0) == [fresh]
    assert is_temporary_name(".result.json.kdx-tmp-x8Yz_q1w") and not is_temporary_name("result.json")


def test_a_failed_atomic_write_leaves_no_temporary(tmp_path, monkeypatch):
    from kdx_engine import atomic_files

    monkeypatch.setattr(atomic_files.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_files.atomic_write_bytes(tmp_path / "out.npy", b"data")
    assert list(tmp_path.iterdir()) == []
