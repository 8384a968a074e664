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
    # How many tensors its state_dict holds (num_batches_tracked left out), when known without building
    # it: a state_dict of another count is passed over without building a very deep architecture.
    tensor_count: int | None = None

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


def register_architecture(name: str, *, family: str, preset: Preprocessing, default_classes: int,
                          tensor_count: int | None = None):
    """Decorator: register ``builder(num_classes) -> nn.Module`` under ``name``."""

    def decorate(builder: Builder) -> Builder:
        add_architecture(Architecture(name, family, builder, preset, default_classes, tensor_count))
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
    if arch.tensor_count is not None and arch.tensor_count != len(shapes):
        return None
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


BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
SHOWN_NAMES = 3  # names listed per kind of difference; the rest are counted


def state_dict_size(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"277 tensors, 853,018 parameters"``: the tensors a state_dict holds and the parameters among
    them (BatchNorm's running statistics and batch counters are buffers, not parameters)."""
    count = sum(t.numel() for k, t in state_dict.items() if isinstance(t, torch.Tensor)
                and not k.endswith(BUFFER_SUFFIXES))
    return f"{len(state_dict):,} tensor{'s' if len(state_dict) != 1 else ''}, {count:,} parameters"


@dataclass(frozen=True)
class ArchitectureDifference:
    """How a state_dict differs from one registered architecture (at the class count it implies)."""

    name: str
    num_classes: int
    missing: tuple[str, ...]  # the architecture's names the state_dict lacks
    extra: tuple[str, ...]  # the state_dict's names the architecture lacks
    mismatch: tuple[str, tuple[int, ...], tuple[int, ...]] | None  # first name whose shapes differ (file, arch)
    overlap: float  # shared (name, shape) pairs over all names of both, 0…1

    @property
    def description(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"the file lacks {_counted(self.missing)}")
        if self.extra:
            parts.append(f"has {_counted(self.extra)} that {self.name} lacks")
        if self.mismatch:
            key, found, expected = self.mismatch
            parts.append(f"first shape mismatch {key}: {_shape_text(found)} in the file, {_shape_text(expected)} "
                         f"in {self.name}")
        return f"{self.name}: " + ("; ".join(parts) or "same names and shapes")


def _counted(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES]) + (", …" if len(names) > SHOWN_NAMES else "")
    return f"{len(names)} name{'s' if len(names) != 1 else ''} ({shown})"


def architecture_difference(arch: Architecture, state_dict: Mapping[str, torch.Tensor]) -> ArchitectureDifference:
    """What differs between ``state_dict`` and ``arch``: names missing on either side and the first
    shape mismatch, compared at the class count the classifier's shape implies (so a CIFAR-10 head is
    no difference from a CIFAR-100 one)."""
    shapes = parameter_shapes(state_dict)
    arch = arch.fitted_to(shapes)
    reference = architecture_shapes(arch, arch.default_classes)
    num_classes = _classes_of_head(shapes, reference, arch.default_classes)
    if num_classes != arch.default_classes:
        reference = architecture_shapes(arch, num_classes)
    missing = tuple(k for k in reference if k not in shapes)
    extra = tuple(k for k in shapes if k not in reference)
    mismatch = next(((k, shapes[k], reference[k]) for k in reference if k in shapes and shapes[k] != reference[k]),
                    None)
    shared = sum(1 for k in reference if shapes.get(k) == reference[k])
    overlap = shared / max(len(set(reference) | set(shapes)), 1)
    return ArchitectureDifference(arch.name, num_classes, missing, extra, mismatch, overlap)


def _classes_of_head(shapes, reference, default: int) -> int:
    """The class count the state_dict's classifier implies: the output size, in the file, of the last
    of the architecture's tensors that has ``default`` outputs (its head); ``default`` when unknown."""
    implied = _num_classes_from(shapes, reference)
    if implied is not None:
        return implied
    for key in reversed(list(reference)):
        shape = reference[key]
        if shape and shape[0] == default and key in shapes and shapes[key] and len(shapes[key]) == len(shape):
            return shapes[key][0]
    return default


def closest_architectures(state_dict: Mapping[str, torch.Tensor], limit: int = 3,
                          first: tuple[str, ...] = ()) -> list[ArchitectureDifference]:
    """The registered architectures nearest to ``state_dict`` by shared parameter names and shapes, best
    first (those named in ``first``, e.g. a hint from the file's folder, lead when registered); at most
    ``limit``, and only those sharing at least one name."""
    archs = registered_architectures()
    shapes = parameter_shapes(state_dict)
    names = set(shapes)
    shared = {name: len(names & set(architecture_shapes(arch, arch.default_classes))) for name, arch in archs.items()
              if arch.tensor_count is None or name in first or arch.tensor_count <= 2 * len(names)}
    candidates = sorted((n for n in shared if shared[n] or n in first), key=lambda n: (n not in first, -shared[n]))
    found = [architecture_difference(archs[name], state_dict) for name in candidates[:2 * limit]]
    found.sort(key=lambda d: (d.name not in first, -d.overlap, len(d.missing) + len(d.extra)))
    return found[:limit]
