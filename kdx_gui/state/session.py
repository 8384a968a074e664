"""What the window shows, as one state object that views subscribe to (napari's model/view split).

The session holds the loaded models, the gallery's images, the current image, the view settings and
the latest results computed by the engine; every change goes through a method that announces it by
a signal, and views redraw from the session rather than talking to each other or keeping copies (the
dataset folder, for one, lives here only). Importing this module imports no torch: records
hold numpy arrays and engine objects passed in from worker jobs.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from kdx_engine.comparison_settings import ComparisonSettings
from kdx_engine.labels import class_index, label_hints, labelling_class_names
from kdx_engine.roles import PANEL_KEYS, ROLE_LETTERS, ROLE_TITLES, ROLES  # noqa: F401 - re-exported for views

ROLE_COLOURS = {"teacher": "#1f77b4", "student": "#d62728", "base": "#2ca02c"}
UNICAM_VARIANTS = ("label-free", "label-guided")
ANALYSIS_SETTINGS = frozenset({"method", "target_rule", "class_index", "unicam_variant", "reference_folder",
                               "reference_n"})


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model in a slot: the engine backend, its probed layers, the chosen target layer and stages."""

    backend: Any
    layers: tuple = ()
    target_layer: str | None = None
    stages: tuple[str, ...] = ()
    trusted: bool = False
    note: str | None = None

    @property
    def info(self):
        return self.backend.info

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.backend.info.preprocessing.class_names)

    def with_target_layer(self, name: str) -> "LoadedModel":
        return dataclasses.replace(self, target_layer=name)


_ids = itertools.count(1)


@dataclass(frozen=True, eq=False)
class GalleryImage:
    """One image of the gallery: the engine's LoadedImage, its thumbnail and hints for its true label."""

    image: Any
    name: str
    source: str | None
    thumbnail: QImage
    label_hints: tuple[str, ...] = ()
    id: int = field(default_factory=lambda: next(_ids))


def label_hints_for(path: Path | None) -> tuple[str, ...]:
    """Names that may be the image's class (its folder, its file-name prefix)."""
    return label_hints(path)


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """VAM attention and KDExplainer routing read from one checkpoint; a reason where it has none."""

    name: str
    path: str
    class_names: tuple[str, ...] = ()
    vam_layers: tuple = ()  # the engine's LayerAttention records, in depth order
    vam_reason: str | None = None
    routing: tuple[np.ndarray, ...] = ()  # children × parents per routing, level 1→2 first, heads last
    class_paths: tuple[np.ndarray, ...] = ()  # K × experts per level
    routing_entropy: tuple[float, ...] = ()
    tree: Any = None  # the engine's RoutingTree
    routing_reason: str | None = None


@dataclass(frozen=True)
class ViewSettings(ComparisonSettings):
    """The canvas controls: the engine's settings plus where the UniCAM reference set comes from (a
    folder, or the gallery when None); names in ``ANALYSIS_SETTINGS`` need a new engine run, the rest
    only a redraw."""

    reference_folder: str | None = None

    def for_engine(self) -> ComparisonSettings:
        """The engine's ComparisonSettings for these controls."""
        return ComparisonSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ComparisonSettings)})

    @classmethod
    def from_json(cls, data: dict) -> "ViewSettings":
        if not isinstance(data, dict):
            raise ValueError("view settings must be a JSON object")
        defaults = cls()
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(defaults, f.name)
            if default is not None and value is not None and not isinstance(value, type(default)) \
                    and not (isinstance(default, float) and isinstance(value, int)):
                raise ValueError(f"view setting {f.name!r} has the wrong type ({type(value).__name__})")
            values[f.name] = float(value) if isinstance(default, float) else value
        return cls(**values)


class Session(QObject):
    """The window's state; change it through the methods so that every view hears about it."""

    engineReady = Signal(object)
    modelChanged = Signal(str)
    imagesChanged = Signal()
    currentChanged = Signal(int)
    settingsChanged = Signal(list)
    predictionsChanged = Signal()
    comparisonChanged = Signal()
    analysingChanged = Signal(bool)
    datasetFolderChanged = Signal()
    datasetMetricsChanged = Signal()
    attentionSourcesChanged = Signal()
    attentionChanged = Signal()

    def __init__(self, parent: QObject | None = None, settings: ViewSettings | None = None):
        super().__init__(parent)
        self.engine = None
        self.models: dict[str, LoadedModel | None] = {role: None for role in ROLES}
        self.images: list[GalleryImage] = []
        self.current = -1
        self.settings = settings or ViewSettings()
        self.predictions: dict = {}  # image id → the engine's ImagePrediction
        self.comparison = None  # the engine's Comparison of the current image
        self.analysing = False  # a comparison job is queued or running
        self.dataset_folder: str | None = None  # the folder dataset metrics run on (class_name/image)
        self.dataset_metrics = None
        self.dataset_metrics_folder: str | None = None  # the folder ``dataset_metrics`` came from
        self.extra_checkpoints: dict[str, str] = {}  # VAM / KDExplainer files shown beside the slots' models
        self.attention: dict[str, AttentionRecord] = {}

    # --- engine --------------------------------------------------------------------------------
    def set_engine(self, status) -> None:
        self.engine = status
        self.engineReady.emit(status)

    @property
    def engine_ready(self) -> bool:
        return self.engine is not None

    # --- models --------------------------------------------------------------------------------
    def set_model(self, role: str, model: LoadedModel | None) -> None:
        """Put a model in a slot (None empties it); results of the old set of models are dropped at once,
        so no view shows numbers of a pair that is no longer loaded."""
        self.models[role] = model
        self.predictions = {}
        if self.comparison is not None:
            self.set_comparison(None)
        if self.dataset_metrics is not None:
            self.set_dataset_metrics(None, None)
        self.modelChanged.emit(role)

    def set_target_layer(self, role: str, layer: str) -> None:
        model = self.models[role]
        if model is None or model.target_layer == layer:
            return
        self.models[role] = model.with_target_layer(layer)
        self.predictions = {}
        self.modelChanged.emit(role)

    def loaded_models(self) -> dict[str, LoadedModel]:
        return {role: model for role, model in self.models.items() if model is not None}

    def class_names(self) -> tuple[str, ...]:
        """The class names images are labelled with: the first real names in role order (Teacher first)."""
        return labelling_class_names(m.class_names for role in ROLES if (m := self.models[role]) is not None)

    # --- images --------------------------------------------------------------------------------
    def add_images(self, items: list[GalleryImage]) -> None:
        if not items:
            return
        first_new = len(self.images)
        self.images.extend(items)
        self.imagesChanged.emit()
        if self.current < 0:
            self.set_current(first_new)

    def clear_images(self) -> None:
        self.images = []
        self.predictions = {}
        self.comparison = None
        self.current = -1
        self.imagesChanged.emit()
        self.currentChanged.emit(-1)
        self.comparisonChanged.emit()

    def remove_images(self, ids) -> int:
        """Take the images with these ids out of the gallery (and their results); the current image stays
        current if it is kept, else the next one takes its place. Returns how many were removed."""
        ids = set(ids)
        kept = [item for item in self.images if item.id not in ids]
        removed = len(self.images) - len(kept)
        if not removed:
            return 0
        if len(kept) == 0:
            self.clear_images()
            return removed
        current = self.current_image
        if current is not None and current.id not in ids:
            new_current = kept.index(current)
        else:  # the first kept image after the old current one, else the last one
            after = [i for i, item in enumerate(self.images) if i > self.current and item.id not in ids]
            new_current = kept.index(self.images[after[0]]) if after else len(kept) - 1
            if self.comparison is not None:
                self.comparison = None
                self.comparisonChanged.emit()
        self.images = kept
        self.predictions = {k: v for k, v in self.predictions.items() if k not in ids}
        old_current = self.current
        self.current = new_current
        self.imagesChanged.emit()
        if new_current != old_current or current is None or current.id in ids:
            self.currentChanged.emit(new_current)
        return removed

    def is_empty(self) -> bool:
        """Nothing loaded: no model, image or extra checkpoint."""
        return not self.loaded_models() and not self.images and not self.extra_checkpoints

    def clear(self) -> None:
        """Empty the session (File ▸ New, Close all): models, images, checkpoints, the dataset folder and
        every result; the view settings stay."""
        for role in ROLES:
            if self.models[role] is not None:
                self.set_model(role, None)
        self.clear_images()
        if self.extra_checkpoints:
            self.set_checkpoints({})
        if self.attention:
            self.set_attention({})
        self.set_dataset_folder(None)
        if self.dataset_metrics is not None or self.dataset_metrics_folder is not None:
            self.set_dataset_metrics(None, None)
        self.set_analysing(False)

    def set_current(self, index: int) -> None:
        if not -1 <= index < len(self.images) or index == self.current:
            return
        self.current = index
        self.currentChanged.emit(index)

    @property
    def current_image(self) -> GalleryImage | None:
        return self.images[self.current] if 0 <= self.current < len(self.images) else None

    def label_of(self, item: GalleryImage) -> int | None:
        """The image's true class index, matched from its folder or file name to the class names."""
        return class_index(item.label_hints, self.class_names())

    # --- settings and results ------------------------------------------------------------------
    def update_settings(self, **changes) -> None:
        changed = [name for name, value in changes.items() if getattr(self.settings, name) != value]
        if not changed:
            return
        self.settings = dataclasses.replace(self.settings, **changes)
        self.settingsChanged.emit(changed)

    def set_predictions(self, predictions: dict) -> None:
        self.predictions = predictions
        self.predictionsChanged.emit()

    def clear_predictions(self) -> None:
        """Forget the gallery's predictions (they no longer match the settings)."""
        if self.predictions:
            self.set_predictions({})

    def set_analysing(self, analysing: bool) -> None:
        """Whether a comparison of the current image is being computed."""
        if analysing != self.analysing:
            self.analysing = analysing
            self.analysingChanged.emit(analysing)

    def set_comparison(self, comparison) -> None:
        self.comparison = comparison
        self.comparisonChanged.emit()

    def add_checkpoint(self, path: str, name: str | None = None) -> None:
        """A checkpoint for the VAM and KDExplainer views only (not a slot model)."""
        self.extra_checkpoints[name or Path(path).name] = str(path)
        self.attentionSourcesChanged.emit()

    def set_checkpoints(self, checkpoints: dict[str, str]) -> None:
        """Replace the extra checkpoints (display name → file)."""
        self.extra_checkpoints = {name: str(path) for name, path in checkpoints.items()}
        self.attentionSourcesChanged.emit()

    def attention_sources(self) -> dict[str, str]:
        """Display name → file of every checkpoint the attention views read: slot models first."""
        sources = {f"{ROLE_TITLES[role]} ({Path(m.info.path).name})": m.info.path
                   for role, m in self.loaded_models().items()}
        sources.update(self.extra_checkpoints)
        return sources

    def set_attention(self, records: dict[str, AttentionRecord]) -> None:
        self.attention = records
        self.attentionChanged.emit()

    def set_dataset_folder(self, folder: str | None) -> None:
        """The folder dataset metrics run on (chosen, from a project, or the demo's). A UniCAM reference
        set drawn from the previous dataset follows to the new one (None: the gallery); a reference folder
        the user chose for itself stays."""
        folder = str(folder) if folder else None
        if folder == self.dataset_folder:
            return
        previous, self.dataset_folder = self.dataset_folder, folder
        self.datasetFolderChanged.emit()
        if previous is not None and self.settings.reference_folder == previous:
            self.update_settings(reference_folder=folder)  # the UniCAM reference follows the loaded dataset

    def set_dataset_metrics(self, metrics, folder: str | None) -> None:
        """The engine's DatasetMetrics computed on ``folder`` (None clears them)."""
        self.dataset_metrics, self.dataset_metrics_folder = metrics, folder
        self.datasetMetricsChanged.emit()

