"""Honest ``torch.export`` programs (``.pt2``) and their malicious twins, for the security tests.

Each twin is an honest program whose archive was edited so that ``torch.export.load`` would unpickle a
payload with ``weights_only=False`` (or plain ``pickle.loads``): the payload writes a marker file, so a
test sees whether any code from the file ran. One twin per place torch reads a pickle from: the sample
inputs (once failing, once returning valid inputs so that the load would succeed), a weight and a tensor
constant marked ``use_pickle``, an opaque constant object, and the legacy weights/constants files.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch
from torch import nn

INPUT_SIZE = 32


def honest_program(path: Path, seed: int = 0) -> Path:
    """A small CNN (3 classes, 32 px) exported with ``torch.export`` and saved to ``path``."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    program = torch.export.export(model, (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),))
    torch.export.save(program, str(path))
    return path


class _Payload:
    """Unpickles as a call that creates ``marker`` (and evaluates to ``value_code``'s value)."""

    def __init__(self, marker: Path, value_code: str = "None"):
        self.marker, self.value_code = str(marker), value_code

    def __reduce__(self):
        code = f"(open({self.marker!r}, 'w').close(), {self.value_code})[1]"
        return (eval, (code,))


def _torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rewrite(source: Path, target: Path, edit) -> Path:
    """Copy the archive ``source`` to ``target``, entries passed through ``edit(name, data) -> data``
    (None drops the entry), then the extra entries ``edit.extra`` (name -> bytes) added."""
    with zipfile.ZipFile(source) as archive:
        entries = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    root = entries[0][0].split("/")[0]
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            data = edit(name[len(root) + 1:], data)
            if data is not None:
                archive.writestr(name, data)
        for name, data in getattr(edit, "extra", {}).items():
            archive.writestr(f"{root}/{name}", data)
    return target


VALID_INPUTS = f"((__import__('torch').zeros(1, 3, {INPUT_SIZE}, {INPUT_SIZE}),), {{}})"


def malicious_programs(folder: Path, marker: Path) -> dict[str, Path]:
    """Every malicious twin of an honest program, by the place it hides its payload."""
    folder.mkdir(parents=True, exist_ok=True)
    honest = honest_program(folder / "honest_source.pt2")
    twins = {}

    def sample_inputs(value_code):
        def edit(name, data):
            return _torch_saved(_Payload(marker, value_code)) if name.startswith("data/sample_inputs/") else data
        return edit

    twins["sample inputs"] = _rewrite(honest, folder / "sample_inputs.pt2", sample_inputs("None"))
    twins["sample inputs, valid"] = _rewrite(honest, folder / "sample_inputs_valid.pt2", sample_inputs(VALID_INPUTS))

    def pickled_weight(name, data):
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name == "data/weights/weight_0":
            return _torch_saved(_Payload(marker, "__import__('torch').zeros(4, 3, 3, 3)"))
        return data

    twins["use_pickle weight"] = _rewrite(honest, folder / "pickled_weight.pt2", pickled_weight)

    def constant(prefix, data_bytes):
        def edit(name, data):
            if name == "data/constants/model_constants_config.json":
                return json.dumps({"config": {"c": {"path_name": f"{prefix}0", "is_param": False,
                                                    "use_pickle": True, "tensor_meta": None}}}).encode()
            return data
        edit.extra = {f"data/constants/{prefix}0": data_bytes}
        return edit

    import pickle

    twins["use_pickle constant"] = _rewrite(honest, folder / "pickled_constant.pt2",
                                            constant("tensor_", _torch_saved(_Payload(marker))))
    twins["opaque constant"] = _rewrite(honest, folder / "opaque_constant.pt2",
                                        constant("opaque_obj_", pickle.dumps(_Payload(marker))))
    twins["opaque constant, protocol 0"] = _rewrite(honest, folder / "opaque_constant_p0.pt2",
                                                    constant("opaque_obj_", pickle.dumps(_Payload(marker), 0)))

    def legacy(kind):
        def edit(name, data):
            if name.startswith(f"data/{kind}/"):
                return None
            return data
        edit.extra = {f"data/{kind}/model.pt": _torch_saved(_Payload(marker, "{}"))}
        return edit

    twins["legacy weights file"] = _rewrite(honest, folder / "legacy_weights.pt2", legacy("weights"))
    twins["legacy constants file"] = _rewrite(honest, folder / "legacy_constants.pt2", legacy("constants"))
    honest.unlink()
    return twins
