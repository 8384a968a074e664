"""One image's comparison of Teacher, Student and Base (PRODUCT §5–§6): each model's map, the UniCAM
distilled and residual maps, the T − S difference, predictions, KL(T‖S) and the T–S map metrics.

Built by ``compare_image``, the one function behind the window's canvas, ``kdx explain`` and ``kdx
export``. Every map lives on the original image's pixel grid (``image_grid``). Each model runs one
forward pass per image: its target is chosen from the logits of the pass that computes its map, and
the UniCAM maps reuse the same pass.
"""
from __future__ import annotations

import math
from pathlib import Path
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..cams import TargetRule, cam_method, compare_maps, pearson
from ..dark_knowledge import kl_divergence
from ..data.images import LoadedImage, to_batch
from ..jobs import Progress, report
from ..labels import labelling_class_names
from ..messages import first_line
from ..models.backend import MODEL_ERRORS, PENULTIMATE, ModelBackend
from ..models.preprocessing import preprocessing_difference
from ..comparison_settings import ComparisonSettings
from ..roles import PANEL_KEYS, ROLE_TITLES, ROLES, UNICAM_KEYS, panel_title, unicam_pair
from ..unicam import ReferenceSet, UniCam
from .image_grid import ImageGrid, common_window, frame_on_grid, image_grid, mask_on_grid, maps_on_grid

NORMALISATION = "per-map min–max (ε = 1e-7) over the map's pixels on the image grid, after resizing"
EPS = 1e-7


@dataclass(frozen=True, eq=False)
class ComparisonModel:
    """A model in a role: its backend and the layer its maps are taken at (None: why in ``note``)."""

    backend: ModelBackend
    layer: str | None
    note: str | None = None


@dataclass(frozen=True, eq=False)
class Panel:
    """One panel: values on the image grid (NaN where undefined), or the ``message`` saying why there
    are none; ``note`` is the engine's reason a map is blank or broken."""

    key: str
    title: str
    subtitle: str = ""
    values: np.ndarray | None = None
    note: str | None = None
    message: str | None = None
    kind: str = "map"  # "image" (RGB), "map" (≥ 0), "difference" (signed)
    group: str = "cam"  # panels of one group share a scale when the scale is shared
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelPrediction:
    """A model's class probabilities for the image and the class its map explains."""

    probabilities: np.ndarray
    predicted: int
    target: int | None = None


@dataclass(frozen=True, eq=False)
class Comparison:
    """Everything computed for one image; ``image_id`` is the caller's identifier for it."""

    image: LoadedImage
    label: int | None
    class_names: tuple[str, ...]
    grid: ImageGrid
    frame: np.ndarray
    mask: np.ndarray | None
    panels: dict[str, Panel]
    predictions: dict[str, ModelPrediction]
    settings: ComparisonSettings
    kl_teacher_student: float | None = None
    map_metrics: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    reference: dict | None = None
    notes: tuple[str, ...] = ()
    image_id: Any = None

    @property
    def probabilities(self) -> dict[str, np.ndarray]:
        return {role: p.probabilities for role, p in self.predictions.items()}

    def class_name(self, index: int | None) -> str:
        if index is None:
            return "unknown"
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"


class UniCamCache:
    """The UniCAM explainers (with their cached reference rows) of the latest model pairs; bounded, and
    owned by whoever keeps the models (the window's scheduler, one CLI run)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def explainer(self, x: ComparisonModel, y: ComparisonModel, reference: ReferenceSet, variant: str,
                  teacher: ComparisonModel | None) -> UniCam:
        key = (id(x.backend), id(y.backend), x.layer, reference.key, variant,
               id(teacher.backend) if teacher else None)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        explainer = UniCam(x.backend, y.backend, reference, layer=x.layer, variant=variant,
                           teacher=teacher.backend if teacher else None)
        self._items[key] = (explainer, x, y, teacher)  # the models stay alive while their key is used
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return explainer

    def clear(self) -> None:
        self._items.clear()


def compare_image(models: Mapping[str, ComparisonModel], image: LoadedImage, label: int | None = None,
                  settings: ComparisonSettings = ComparisonSettings(), reference: ReferenceSet | None = None,
                  unicam_cache: UniCamCache | None = None, panels: Sequence[str] = PANEL_KEYS,
                  reference_problem: str | None = None, image_id: Any = None,
                  progress: Progress | None = None) -> Comparison:
    """The comparison of ``image`` by the models in their roles (any of teacher, student, base)."""
    roles = [role for role in ROLES if role in models]
    grid = image_grid(*image.rgb.shape[:2])
    frame = frame_on_grid(image.rgb, grid)
    mask = mask_on_grid(image.mask, grid)
    wanted_unicam = [key for key in UNICAM_KEYS if key in panels]
    unicam_roles = {r for key in wanted_unicam for r in unicam_pair(key, roles) if r in models}
    class_names = labelling_class_names(models[r].backend.info.preprocessing.class_names for r in roles)
    result: dict[str, Panel] = {"input": Panel("input", "Input", _input_subtitle(image, label, class_names), frame,
                                               kind="image", group="input")}
    predictions: dict[str, ModelPrediction] = {}
    forwards: dict[str, Any] = {}
    for index, role in enumerate(ROLES):
        report(progress, index / 6, f"{settings.method}: {ROLE_TITLES[role]}")
        if role not in models:
            result[role] = Panel(role, ROLE_TITLES[role], message=f"no {ROLE_TITLES[role]} model loaded: drop a "
                                 f"model file on the {ROLE_TITLES[role]} slot")
            continue
        feature_layers = (PENULTIMATE,) if role in unicam_roles else ()
        result[role], predictions[role], forwards[role] = _model_panel(
            role, models[role], image, label, settings, grid, class_names, feature_layers)
    result["difference"] = _difference_panel(result)
    for key in wanted_unicam:
        report(progress, 0.5 + 0.2 * UNICAM_KEYS.index(key), f"UniCAM {key}")
        result[key] = _unicam_panel(key, models, roles, image, label, settings, grid, reference, reference_problem,
                                    unicam_cache or UniCamCache(), forwards)
    report(progress, 1.0, "done")
    return Comparison(
        image=image, label=label, class_names=class_names, grid=grid, frame=frame, mask=mask,
        panels={key: result[key] for key in PANEL_KEYS if key in result and (key in panels or key == "input")},
        predictions=predictions, settings=settings,
        kl_teacher_student=_kl(predictions.get("teacher"), predictions.get("student")),
        map_metrics=_map_metrics(result, models, image, grid, mask),
        models={role: model_record(models[role]) for role in roles},
        reference=_reference_record(reference) if wanted_unicam and reference is not None else None,
        notes=(*image.notes, *_preprocessing_notes(models, roles)), image_id=image_id,
    )


def model_record(model: ComparisonModel) -> dict:
    """What an export records of a model (METHODS §9): ``ModelInfo.record`` and the layer."""
    return {**model.backend.info.record(), "layer": model.layer}


def _input_subtitle(image: LoadedImage, label: int | None, class_names) -> str:
    if label is None:
        truth = "true class unknown"
    else:
        truth = f"true: {class_names[label] if 0 <= label < len(class_names) else label}"
    return f"{image.path.name} · {truth}"


def _target_rule(settings: ComparisonSettings, label: int | None) -> TargetRule:
    return TargetRule(settings.target_rule, labels=(label,), class_index=settings.class_index)


def _model_panel(role, model: ComparisonModel, image, label, settings, grid, class_names, feature_layers):
    """The model's map on the grid, its prediction and its forward pass (for UniCAM), from one pass."""
    title = ROLE_TITLES[role]
    x = to_batch([image], model.backend.info.preprocessing)
    if model.layer is None:
        logits = model.backend.logits(x)
        return Panel(role, title, message=model.note or "no target layer chosen"), _prediction(logits, None), None
    try:
        method = cam_method(settings.method)(model.backend, layer=model.layer)
        forward = forward_with_features(method, x, feature_layers)
        explanation = method.from_forward(x, forward, _target_rule(settings, label))
    except MODEL_ERRORS as exc:
        logits = logits_or_none(model.backend, x)
        prediction = _prediction(logits, None) if logits is not None else None
        return Panel(role, title, message=f"{settings.method} failed: {first_line(exc)}"), prediction, None
    target = explanation.targets[0]
    prediction = _prediction(explanation.logits, target)
    values = maps_on_grid(explanation.low_res, image.rgb.shape[:2], model.backend.info.preprocessing, grid)[0]
    name = class_names[target] if target < len(class_names) else str(target)
    subtitle = f"{settings.method} @ {model.layer} · target {name} ({explanation.target_rule}) · " \
               f"p={prediction.probabilities[target]:.2f}"
    details = {"method": settings.method, "layer": model.layer, "target": target, "target_name": name,
               "target_rule": explanation.target_rule}
    return Panel(role, title, subtitle, values, explanation.notes[0], details=details), prediction, forward


def forward_with_features(method, x, feature_layers):
    """The method's forward pass, with extra captured layers (UniCAM's feature layer) when the backend has them;
    without them when it cannot (UniCAM then reports the problem)."""
    if feature_layers:
        try:
            return method.run_forward(x, feature_layers)
        except MODEL_ERRORS:
            pass
    return method.run_forward(x)


def logits_or_none(backend, x):
    """The model's logits, or None when the model fails on the batch (the caller reports it)."""
    try:
        return backend.logits(x)
    except MODEL_ERRORS:
        return None


def _prediction(logits: torch.Tensor, target: int | None) -> ModelPrediction | None:
    if not torch.isfinite(logits).all():
        return None
    probabilities = torch.softmax(logits.double(), dim=1)[0].numpy()
    return ModelPrediction(probabilities, int(probabilities.argmax()), target)


def normalised(values: np.ndarray) -> np.ndarray:
    """Min–max scaling (ε = 1e-7) over the finite pixels; NaN stays NaN."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return values
    low, high = float(finite.min()), float(finite.max())
    return (values - low) / (high - low + EPS)


def _difference_panel(panels: dict[str, Panel]) -> Panel:
    title = "T − S"
    missing = [ROLE_TITLES[r] for r in ("teacher", "student") if panels.get(r) is None or panels[r].values is None]
    if missing:
        return Panel("difference", title, message=f"needs the {' and '.join(missing)} map"
                     + ("s" if len(missing) > 1 else ""), kind="difference", group="difference")
    diff = normalised(panels["teacher"].values) - normalised(panels["student"].values)
    return Panel("difference", title, "Teacher − Student, each map min–max scaled", diff,
                 kind="difference", group="difference")


def _unicam_panel(key, models, roles, image, label, settings, grid, reference, reference_problem, cache, forwards):
    x_role, y_role = unicam_pair(key, roles)
    title = panel_title(key, roles)
    needed = [ROLE_TITLES[r] for r in (x_role, y_role) if r not in models]
    if needed:
        return Panel(key, title, message=f"needs a {' and a '.join(needed)} model", group="unicam")
    if reference is None:
        return Panel(key, title, message=f"no UniCAM reference set: {reference_problem or 'none given'}. Add "
                     "images to the gallery, choose a reference folder, or lower n", group="unicam")
    x_model, y_model = models[x_role], models[y_role]
    if x_model.layer is None:
        return Panel(key, title, message=x_model.note or "no target layer chosen", group="unicam")
    try:
        explainer = cache.explainer(x_model, y_model, reference, settings.unicam_variant, models.get("teacher"))
        x_forward = _reusable(forwards.get(x_role), explainer)
        if x_forward is None:
            x_forward = explainer.query_forward(image)
        y_forward = forwards.get(y_role)
        if y_forward is None or explainer.feature_layer not in y_forward.activations:
            y_forward = y_model.backend.forward(to_batch([image], y_model.backend.info.preprocessing),
                                                [explainer.feature_layer])
        explanation = explainer.explain_from(x_forward, y_forward.activations[explainer.feature_layer], image, label)
    except MODEL_ERRORS as exc:
        return Panel(key, title, message=f"UniCAM failed: {first_line(exc)}", group="unicam")
    values = maps_on_grid(explanation.low_res, image.rgb.shape[:2], x_model.backend.info.preprocessing, grid)[0]
    details = explanation.details.get("unicam", {})
    subtitle = f"{settings.unicam_variant} · {x_model.layer} · ref {_source_name(reference)}, " \
               f"n={len(reference.images) + 1}"
    return Panel(key, title, subtitle, values, explanation.notes[0], group="unicam",
                 details={"explained": ROLE_TITLES[x_role], "removed": ROLE_TITLES[y_role], "layer": x_model.layer,
                          **details})


def _reusable(forward, explainer: UniCam):
    """The CAM's forward pass, when it can also serve UniCAM (same gradient layer, features kept)."""
    if forward is None or getattr(forward, "grad_layer", None) != explainer.layer:
        return None
    return forward if explainer.feature_layer in forward.activations else None


def _source_name(reference: ReferenceSet) -> str:
    return Path(reference.source).name or reference.source


def _reference_record(reference: ReferenceSet) -> dict:
    return {"source": reference.source, "seed": reference.seed, "n": len(reference.images) + 1,
            "key": reference.key, "hashes": reference.hashes}


def _map_metrics(panels, models, image, grid, mask) -> dict:
    """Pearson, Spearman, top-20% IoU of the T and S maps (raw), and their energy in the mask, over the
    pixels both models see."""
    teacher, student = panels.get("teacher"), panels.get("student")
    if teacher is None or student is None or teacher.values is None or student.values is None:
        return {}
    rows, cols = window_seen_by(image.rgb.shape[:2], grid, models["teacher"], models["student"])
    a, b = teacher.values[rows, cols], student.values[rows, cols]
    if a.size == 0:
        return {"note": "the Teacher's and the Student's crops do not overlap"}
    record = compare_maps(a, b, mask=mask[rows, cols] if mask is not None else None).to_dict()
    covered = a.size / float(grid.height * grid.width)
    record["pixels_compared"] = int(a.size)
    record["share_of_image"] = covered
    return record


def window_seen_by(shape, grid, *models: ComparisonModel) -> tuple[slice, slice]:
    """The grid pixels every one of ``models`` sees (inside each one's crop), as (rows, cols) slices."""
    return common_window(shape, grid, *(m.backend.info.preprocessing for m in models))


def _preprocessing_notes(models, roles) -> list[str]:
    """Say when the models see different parts or resolutions of the image."""
    first = roles[0] if roles else None
    notes = []
    for role in roles[1:]:
        a, b = models[first].backend.info.preprocessing, models[role].backend.info.preprocessing
        difference = preprocessing_difference(b, a, ROLE_TITLES[first])
        if difference:
            notes.append(f"{ROLE_TITLES[role]} {difference}; maps are compared on the image's pixels they share")
    return notes


def _kl(p: ModelPrediction | None, q: ModelPrediction | None) -> float | None:
    """KL(P‖Q) in nats between two models' class probabilities (``dark_knowledge.kl_divergence``)."""
    if p is None or q is None or p.probabilities.shape != q.probabilities.shape:
        return None
    return float(kl_divergence(p.probabilities, q.probabilities))


@dataclass(frozen=True)
class ImagePrediction:
    """Per gallery image: each model's predicted class and confidence, and the T–S map correlation."""

    classes: dict[str, int]
    confidence: dict[str, float]
    correlation: float = math.nan
    correlation_note: str | None = None


def gallery_predictions(models: Mapping[str, ComparisonModel], images: Sequence[LoadedImage],
                        labels: Sequence[int | None], settings: ComparisonSettings, batch_size: int = 32,
                        progress: Progress | None = None) -> list[ImagePrediction]:
    """Each model's prediction for every image and Pearson's r of the T and S maps on the image's pixels
    (the gallery's sort key); one forward pass per model and image."""
    records = []
    for start in range(0, len(images), batch_size):
        report(progress, start / max(len(images), 1), f"predictions {start}/{len(images)}")
        chunk, chunk_labels = list(images[start:start + batch_size]), list(labels[start:start + batch_size])
        records += _batch_predictions(models, chunk, chunk_labels, settings)
    report(progress, 1.0, "done")
    return records


def _batch_predictions(models, images, labels, settings) -> list[ImagePrediction]:
    classes = [{} for _ in images]
    confidence = [{} for _ in images]
    maps: dict[str, list] = {}
    failure = None
    for role in (r for r in ROLES if r in models):
        model = models[role]
        x = to_batch(images, model.backend.info.preprocessing)
        logits = None
        if role in ("teacher", "student") and model.layer is not None:
            try:
                method = cam_method(settings.method)(model.backend, layer=model.layer)
                explanation = method.from_forward(x, method.run_forward(x), TargetRule(
                    settings.target_rule, labels=tuple(labels), class_index=settings.class_index))
                logits = explanation.logits
                maps[role] = [explanation.low_res[i:i + 1] for i in range(len(images))]
            except MODEL_ERRORS as exc:
                failure = f"{settings.method} failed: {first_line(exc)}"
        if logits is None:
            logits = logits_or_none(model.backend, x)
        if logits is None or not torch.isfinite(logits).all():
            continue
        probs = torch.softmax(logits.double(), dim=1).max(dim=1)
        for i, (k, p) in enumerate(zip(probs.indices.tolist(), probs.values.tolist())):
            classes[i][role], confidence[i][role] = k, p
    records = []
    for i, image in enumerate(images):
        if "teacher" in maps and "student" in maps:
            grid = image_grid(*image.rgb.shape[:2])
            placed = {role: maps_on_grid(maps[role][i], image.rgb.shape[:2],
                                         models[role].backend.info.preprocessing, grid)[0]
                      for role in ("teacher", "student")}
            rows, cols = window_seen_by(image.rgb.shape[:2], grid, models["teacher"], models["student"])
            value = pearson(placed["teacher"][rows, cols], placed["student"][rows, cols]) \
                if placed["teacher"][rows, cols].size else None
            r, note = (value.value, value.reason) if value is not None else (math.nan, "crops do not overlap")
        else:
            r, note = math.nan, failure or "needs a Teacher and a Student"
        records.append(ImagePrediction(classes[i], confidence[i], r, note))
    return records


__all__ = ["Comparison", "ComparisonModel", "ComparisonSettings", "ImagePrediction", "ModelPrediction", "Panel",
           "UniCamCache", "compare_image", "gallery_predictions", "model_record", "normalised", "first_line",
           "NORMALISATION"]
