"""Importing the engine (torch and friends) off the GUI thread, and knowing which optional parts exist.

The window is shown before this runs: ``import torch`` alone takes seconds. Until it has finished,
GUI code must not import ``kdx_engine`` modules that pull in torch; the first job in the queue is
this import, so every later job finds the engine ready.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

CORE_MODULES = ("kdx_engine.models", "kdx_engine.cams", "kdx_engine.data", "kdx_engine.figures")
OPTIONAL_MODULES = {
    "unicam": "kdx_engine.unicam",
    "metrics": "kdx_engine.metrics",
    "vam": "kdx_engine.vam",
    "hme": "kdx_engine.hme",
}
FEATURE_NAMES = {
    "unicam": "UniCAM (distilled and residual maps)",
    "metrics": "dataset metrics (FSS, CKA, RS)",
    "vam": "VAM attention",
    "hme": "KDExplainer routing",
}


@dataclass(frozen=True)
class EngineStatus:
    """What the imported engine offers: ``missing`` maps an optional feature to why it is unavailable."""

    missing: dict[str, str] = field(default_factory=dict)

    def has(self, feature: str) -> bool:
        return feature not in self.missing

    def why_missing(self, feature: str) -> str:
        return f"{FEATURE_NAMES.get(feature, feature)} is not available in this engine build yet " \
               f"({self.missing.get(feature, '')})"


def import_engine(progress=None) -> EngineStatus:
    """Import the engine's packages; optional ones that fail are recorded, never fatal."""
    for index, name in enumerate(CORE_MODULES):
        if progress is not None:
            progress.update(index / (len(CORE_MODULES) + len(OPTIONAL_MODULES)), f"importing {name}")
        importlib.import_module(name)
    _leave_a_core_for_the_window()
    missing: dict[str, str] = {}
    for index, (feature, name) in enumerate(OPTIONAL_MODULES.items()):
        if progress is not None:
            progress.update((len(CORE_MODULES) + index) / (len(CORE_MODULES) + len(OPTIONAL_MODULES)),
                            f"importing {name}")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing[feature] = f"no module {exc.name}" if exc.name else str(exc)
        except Exception as exc:  # a half-written optional package must not stop the app
            missing[feature] = f"{name} failed to import: {type(exc).__name__}: {exc}"
    return EngineStatus(missing)


def _leave_a_core_for_the_window() -> None:
    """torch's intra-op threads on every core would starve the GUI thread during long jobs."""
    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)
