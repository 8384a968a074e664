"""Names of an architecture that a checkpoint gives besides its weights: RepDistiller's folder
(``resnet32x4_vanilla/ckpt_epoch_240.pth``, ``S:resnet8x4_T:resnet32x4_cifar100_kd_…/``), a timm training
checkpoint's ``arch``, a Lightning checkpoint's ``hyper_parameters`` or a saved ``argparse.Namespace``.
They order the candidates (a tie, the closest families named in a refusal) and are shown in the notes;
the weights' own names and shapes still decide."""
from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HINT_FIELDS = ("arch", "architecture", "model", "model_name", "model_type", "backbone", "net", "student", "model_s")
_VANILLA = re.compile(r"^(?P<arch>.+?)_vanilla(?:_.*)?$")
_STUDENT = re.compile(r"^S:(?P<arch>.+?)_T:")
MAX_NAME = 64


@dataclass(frozen=True)
class ArchitectureHint:
    """An architecture name and where it was read (shown in the notes)."""

    name: str
    source: str


def architecture_hints(obj, path: str | Path) -> list[ArchitectureHint]:
    """The architecture names ``obj`` (a loaded checkpoint) and its folder give, most specific first."""
    hints = []
    folder = Path(path).parent.name
    for pattern, what in ((_VANILLA, "RepDistiller teacher folder"), (_STUDENT, "RepDistiller student folder")):
        match = pattern.match(folder)
        if match:
            hints.append(ArchitectureHint(match["arch"], f"{what} {folder}"))
    if isinstance(obj, Mapping):
        hints += _named_in(obj, "the checkpoint")
        for key in ("hyper_parameters", "hparams", "args", "opt", "config", "cfg"):
            if key in obj:
                hints += _named_in(obj[key], f"its {key}")
    return _unique(hints)


def _named_in(container, where: str) -> list[ArchitectureHint]:
    if isinstance(container, argparse.Namespace):
        container = vars(container)
    if not isinstance(container, Mapping):
        return []
    found = []
    for field in HINT_FIELDS:
        value = container.get(field)
        if isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable():
            found.append(ArchitectureHint(value, f"'{field}' in {where}"))
    return found


def _unique(hints: list[ArchitectureHint]) -> list[ArchitectureHint]:
    seen, unique = set(), []
    for hint in hints:
        if hint.name not in seen:
            seen.add(hint.name)
            unique.append(hint)
    return unique


def registered_names(hint: ArchitectureHint, registered) -> list[str]:
    """The registered architectures a hint names: itself, ``timm:NAME`` (a timm checkpoint's ``arch``),
    and the same name with ``_option_a`` or in another case."""
    wanted = [hint.name, "timm:" + hint.name, hint.name + "_option_a"]
    lower = {name.lower(): name for name in registered}
    names = [name for name in wanted if name in registered]
    names += [lower[n.lower()] for n in wanted if n.lower() in lower and lower[n.lower()] not in names]
    return names
