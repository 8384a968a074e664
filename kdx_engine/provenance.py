"""What every export records about the software that made it (METHODS.md §9)."""
from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("kdx", "torch", "torchvision", "numpy", "onnxruntime", "onnx", "Pillow")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
