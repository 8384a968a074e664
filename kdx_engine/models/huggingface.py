"""Hugging Face image-classification folders (``config.json`` + ``model.safetensors``, labels in
``id2label``, preprocessing in ``preprocessor_config.json``): recognised, and refused with what to install,
since building them needs the optional ``transformers`` package (``pip install kdx[hf]``), which KDX does
not load yet."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..file_reading import SIDECAR_LIMIT, SpecialFileError, read_limited_text

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
INSTALL = "pip install kdx[hf]"


def huggingface_config(folder: Path) -> dict | None:
    """The folder's ``config.json`` when it describes a transformers model (``architectures`` or
    ``model_type``) and weights lie beside it; None otherwise."""
    path = Path(folder) / CONFIG
    if not path.is_file() or not any((Path(folder) / name).is_file() for name in WEIGHTS):
        return None
    try:
        config = json.loads(read_limited_text(path, SIDECAR_LIMIT, "Hugging Face config"))
    except (OSError, ValueError, RecursionError, SpecialFileError):
        return None
    if not isinstance(config, dict) or not (config.get("architectures") or config.get("model_type")):
        return None
    return config


def huggingface_problem(folder: Path) -> str | None:
    """Why the Hugging Face folder ``folder`` (or the folder of a weights file in it) cannot be loaded, or
    None when it is not one."""
    config = huggingface_config(folder)
    if config is None:
        return None
    architectures = config.get("architectures") or [config.get("model_type")]
    name = ", ".join(str(a) for a in architectures[:2] if a)
    classes = len(config["id2label"]) if isinstance(config.get("id2label"), dict) else None
    what = f"a Hugging Face {name} model" + (f" ({classes} classes in id2label)" if classes else "")
    if importlib.util.find_spec("transformers") is None:
        return (f"{Path(folder).name}: is {what}; loading it needs the optional 'transformers' package, "
                f"which is not installed: {INSTALL}")
    return (f"{Path(folder).name}: is {what}; KDX does not build transformers models yet: export it to "
            "ONNX or TorchScript (with its preprocessing in a .kdx.json sidecar)")
