"""Registry of architectures that a state_dict can be loaded into, recognised by parameter names and shapes."""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from .preprocessing import Preprocessing

Builder = Callable[[int], nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A named builder ``builder(num_classes) -> nn.Module`` with its family's preprocessing preset."""

    name: str
    family: str
    builder: Builder
    preset: Preprocessing
    default_classes: int

    def build(self, num_classes: int | None = None) -> nn.Module:
        return self.builder(num_classes or self.default_classes)

    def fitted_to(self, shapes: Mapping[str, tuple[int, ...]]) -> "Architecture":
        """This architecture with the options a state_dict's shapes imply (a ViT's input size from its
        position embedding, …); itself where nothing is implied."""
        return self

    @property
    def cache_key(self) -> str:
        """What identifies the built module's shapes (the name, and any options ``fitted_to`` set)."""
        return self.name


_REGISTRY: dict[str, Architecture] = {}
# Builders of architectures named by a prefix (``timm:NAME`` builds any model timm knows), asked by
# ``get_architecture`` for names that are not registered: prefix → ``resolve(name) -> Architecture | None``.
_RESOLVERS: dict[str, Callable[[str], "Architecture | None"]] = {}
# Packages above ``models`` that register architectures of their own, imported by name at the first
# lookup: a checkpoint of theirs then loads from a fresh interpreter, and ``models`` imports none of
# their code (import-linter's layers contract keeps it so).
PLUGIN_MODULES = ("kdx_engine.vam.demo_arch", "kdx_engine.hme.demo_arch")


def register_architecture(name: str, *, family: str, preset: Preprocessing, default_classes: int):
    """Decorator: register ``builder(num_classes) -> nn.Module`` under ``name``."""

    def decorate(builder: Builder) -> Builder:
        add_architecture(Architecture(name, family, builder, preset, default_classes))
        return builder

    return decorate


def add_architecture(arch: Architecture) -> None:
    """Register an ``Architecture`` (or a subclass of it) under its name."""
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture {arch.name!r} is registered twice")
    _REGISTRY[arch.name] = arch


def register_resolver(prefix: str, resolve: Callable[[str], "Architecture | None"]) -> None:
    """Let ``get_architecture`` build unregistered names that start with ``prefix`` (e.g. ``timm:``)."""
    _RESOLVERS[prefix] = resolve


def registered_architectures() -> dict[str, Architecture]:
    """All registered architectures by name (importing the built-in families and the plugins first:
    each registers on import)."""
    for module in (f"{__package__}.architectures", *PLUGIN_MODULES):
        importlib.import_module(module)
    return dict(_REGISTRY)


def get_architecture(name: str) -> Architecture:
    """The registered architecture ``name``, or one a resolver builds for it (``timm:NAME``)."""
    archs = registered_architectures()
    if name in archs:
        return archs[name]
    for prefix, resolve in _RESOLVERS.items():
        if name.startswith(prefix):
            found = resolve(name)
            if found is not None:
                return found
            raise KeyError(f"unknown architecture {name!r}: {name[len(prefix):]!r} is not a model "
                           f"{prefix.rstrip(':')} knows")
    raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(archs))}")


def parameter_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Names and shapes that identify an architecture (``num_batches_tracked`` buffers ignored)."""
    return {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


_SHAPE_CACHE: dict[tuple[str, int], dict[str, tuple[int, ...]]] = {}


def architecture_shapes(arch: Architecture, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of ``arch`` built on the meta device (no memory, milliseconds)."""
    key = (arch.cache_key, num_classes)
    if key not in _SHAPE_CACHE:
        with torch.device("meta"), _initialisers_skipped():
            module = arch.build(num_classes)
        _SHAPE_CACHE[key] = parameter_shapes(module.state_dict())
    return _SHAPE_CACHE[key]


@contextmanager
def _initialisers_skipped():
    """Weight initialisers do nothing while architectures are built for their shapes only (random
    initialisation on the meta device is slow and pointless)."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for name in names:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def _num_classes_from(shapes: Mapping[str, tuple[int, ...]], reference: Mapping[str, tuple[int, ...]]) -> int | None:
    """The class count implied by the one output dimension where ``shapes`` differs from ``reference``."""
    differing = {k for k in reference if shapes.get(k) != reference[k]}
    counts = {shapes[k][0] for k in differing if shapes.get(k) and len(shapes[k]) == len(reference[k])}
    return counts.pop() if len(counts) == 1 else None


def fingerprint(state_dict: Mapping[str, torch.Tensor]) -> list[tuple[Architecture, int]]:
    """Architectures (with class count) whose parameter names and shapes match ``state_dict`` exactly."""
    matches = []
    for arch in registered_architectures().values():
        match = architecture_match(arch, state_dict)
        if match is not None:
            matches.append(match)
    return matches


def architecture_match(arch: Architecture, state_dict: Mapping[str, torch.Tensor]) -> tuple[Architecture, int] | None:
    """``arch`` fitted to ``state_dict`` (see ``Architecture.fitted_to``) with the class count its
    parameters imply, or None when their names and shapes do not match it exactly."""
    shapes = parameter_shapes(state_dict)
    arch = arch.fitted_to(shapes)
    reference = architecture_shapes(arch, arch.default_classes)
    if reference.keys() != shapes.keys():
        return None
    num_classes = arch.default_classes
    if reference != shapes:
        num_classes = _num_classes_from(shapes, reference)
        if num_classes is None or architecture_shapes(arch, num_classes) != shapes:
            return None
    return arch, num_classes


@dataclass(frozen=True)
class ArchitectureSummary:
    """What ``kdx info --list-archs`` shows of one registered architecture: enough to tell whether a
    state_dict was saved from it (its parameter count and its first and last parameters)."""

    name: str
    family: str
    num_classes: int
    input_size: int
    num_parameters: int
    first_parameter: tuple[str, tuple[int, ...]]
    last_parameter: tuple[str, tuple[int, ...]]

    @property
    def description(self) -> str:
        (first, first_shape), (last, last_shape) = self.first_parameter, self.last_parameter
        return (f"{self.num_parameters:,} parameters, {self.num_classes} classes, {self.input_size}×{self.input_size} "
                f"input; first {first} {_shape_text(first_shape)}, last {last} {_shape_text(last_shape)}")

    def to_json(self) -> dict:
        return {"name": self.name, "family": self.family, "num_classes": self.num_classes,
                "input_size": self.input_size, "num_parameters": self.num_parameters,
                "first_parameter": {"name": self.first_parameter[0], "shape": list(self.first_parameter[1])},
                "last_parameter": {"name": self.last_parameter[0], "shape": list(self.last_parameter[1])},
                "description": self.description}


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


_SUMMARIES: dict[str, ArchitectureSummary] = {}


def architecture_families() -> list[ArchitectureSummary]:
    """Every registered architecture, sorted by family then name, with a short fingerprint (parameter
    count, first and last parameter names and shapes, default class count). Built on the meta device."""
    found = []
    for arch in registered_architectures().values():
        if arch.name not in _SUMMARIES:
            with torch.device("meta"), _initialisers_skipped():
                module = arch.build(arch.default_classes)
            params = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
            count = sum(p.numel() for p in module.parameters())
            empty = ("-", ())
            _SUMMARIES[arch.name] = ArchitectureSummary(
                arch.name, arch.family, arch.default_classes, arch.preset.input_size, count,
                params[0] if params else empty, params[-1] if params else empty)
        found.append(_SUMMARIES[arch.name])
    return sorted(found, key=lambda s: (s.family, s.name))
