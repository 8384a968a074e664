"""The models of a scan as files and load options (picklable, so a Ray actor can load its own copy)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..models.preprocessing import PreprocessingOptions

from ..comparison import ComparisonModel, model_record
from ..models import load_model, probe_layers, target_layer_or_reason
from ..models.loading import check_same_classes
from ..roles import ROLES


@dataclass(frozen=True)
class ScanModels:
    """Model files by role (teacher, student, optional base) and how to load them; ``layers`` overrides a
    role's automatic target layer."""

    files: dict[str, str]
    arch: str | None = None
    which: str | None = None
    trust_pickle: bool = False
    layers: dict[str, str] = field(default_factory=dict)
    options: PreprocessingOptions | None = None  # preprocessing of the models without a sidecar

    def __post_init__(self):
        unknown = set(self.files) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown model role(s) {sorted(unknown)}; use {', '.join(ROLES)}")

    def load(self) -> dict[str, ComparisonModel]:
        """Each role's backend with its target layer (automatic unless given), checked to share classes."""
        backends = {role: load_model(self.files[role], arch=self.arch, which=self.which,
                                     trust_pickle=self.trust_pickle, options=self.options)
                    for role in ROLES if role in self.files}
        check_same_classes(*backends.values())
        return comparison_models(backends, self.layers)


def comparison_models(backends: dict, layers: dict[str, str] | None = None) -> dict[str, ComparisonModel]:
    """Backends in their roles at their target layers (``layers`` or the automatic one; None with the
    reason when a model has no spatial layer)."""
    models = {}
    for role, backend in backends.items():
        chosen = (layers or {}).get(role)
        layer, note = (chosen, None) if chosen else target_layer_or_reason(probe_layers(backend))
        models[role] = ComparisonModel(backend, layer, note)
    return models


def models_record(models: dict[str, ComparisonModel]) -> dict:
    """What the manifest records of each model (METHODS §9)."""
    return {role: model_record(model) for role, model in models.items()}
