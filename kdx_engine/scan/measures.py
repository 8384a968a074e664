"""Every measure of a dataset scan for one batch of images: one forward per model and batch.

Per image: each model's prediction and top-k probabilities, KL(T‖S), each model's CAM at its layer
(placed on the image's pixel grid, as ``compare_image`` places it), the T–S map agreement (Pearson,
Spearman, top-20% IoU over the pixels both models see), energy in the mask and the pointing game (over
the pixels every model sees), deletion and insertion AUC (``cams.faithfulness``, at the model's input),
and with UniCAM the distilled and residual maps and their energy in the mask. Same-size images of a
batch are placed and measured together (``cams.map_batches``). The UniCAM maps reuse the batch's
Grad-CAM forward (its VJP is taken again with UniCAM's seed), so they cost no forward of their own.
``explain_batch`` runs the models; ``batch_rows`` makes the rows from what they gave without running one,
so the in-process scan runs the two on different threads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from ..cams import Explanation, TargetRule, cam_method, deletion_insertion
from ..cams.map_batches import agreement_rows, energy_in_mask_rows, pointing_game_rows
from ..dark_knowledge import kl_divergence
from ..labels import labelling_class_names
from ..cams.targets import CamTarget, GradientSeed
from ..comparison import ComparisonModel, image_grid, maps_on_grid
from ..comparison.comparison import forward_with_features, logits_or_none, window_seen_by
from ..comparison.image_grid import mask_on_grid
from ..data.images import LoadedImage, to_batch
from ..messages import first_line
from ..models.backend import MODEL_ERRORS, PENULTIMATE
from ..roles import ROLES, UNICAM_KEYS, unicam_pair
from ..unicam import UniCamCAM
from ..comparison import UniCamCache



@dataclass(frozen=True)
class ScanSettings:
    """What a scan computes: CAM methods, target rule, top-k, faithfulness steps (0: none) and UniCAM."""

    methods: tuple[str, ...] = ("gradcam",)
    target_rule: str = "predicted"
    top_k: int = 3
    faithfulness_steps: int = 20
    faithfulness_baseline: str = "blur"
    unicam: bool = False
    unicam_variant: str = "label-free"
    reference_n: int = 16
    seed: int = 0
    save_maps: bool = True

    def to_json(self) -> dict:
        return {"methods": list(self.methods), "target_rule": self.target_rule, "top_k": self.top_k,
                "faithfulness_steps": self.faithfulness_steps, "faithfulness_baseline": self.faithfulness_baseline,
                "unicam": self.unicam, "unicam_variant": self.unicam_variant, "reference_n": self.reference_n,
                "seed": self.seed, "save_maps": self.save_maps}


@dataclass
class ImageResult:
    """One image's row (column → value) and its maps on the image grid (map key → H×W float32)."""

    row: dict
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def column_name(method: str) -> str:
    """A method's name as a column prefix (``gradcam++`` → ``gradcampp``)."""
    return method.replace("+", "p").replace("-", "_")


def map_key(method: str, role: str) -> str:
    return f"{column_name(method)}_{role}"


@dataclass
class BatchExplanations:
    """A batch's model work: each model's CAMs (or why one failed), their deletion/insertion scores, the
    probabilities and the UniCAM maps. ``batch_rows`` turns it into rows without running a model, so the
    rows of one batch can be made on another thread while the models run on the next."""

    images: Sequence[LoadedImage]
    labels: Sequence[int | None]
    cams: dict[tuple[str, str], Explanation | str] = field(default_factory=dict)  # (method, role) → map or note
    faithfulness: dict[tuple[str, str], object] = field(default_factory=dict)
    probabilities: dict[str, torch.Tensor] = field(default_factory=dict)
    unicam: dict[str, Explanation | str] = field(default_factory=dict)  # UNICAM_KEYS → maps or note


def explain_batch(models: Mapping[str, ComparisonModel], images: Sequence[LoadedImage],
                  labels: Sequence[int | None], settings: ScanSettings, reference=None,
                  unicam_cache: UniCamCache | None = None) -> BatchExplanations:
    """Every model's work on the batch: one forward per model and method family for all images."""
    roles = [role for role in ROLES if role in models]
    explained = BatchExplanations(images, labels)
    if not images:
        return explained
    unicam_roles = {r for key in UNICAM_KEYS for r in unicam_pair(key, roles)} if settings.unicam else set()
    forwards: dict[str, object] = {}
    inputs = _Inputs(images)
    for role in roles:
        model = models[role]
        x = inputs.of(model.backend)
        shared_forward = None
        for method_name in settings.methods:
            try:
                if model.layer is None:
                    raise ValueError(model.note or "no target layer chosen")
                method = cam_method(method_name)(model.backend, layer=model.layer)
                if method.uses_gradients and shared_forward is not None:
                    forward = shared_forward
                else:
                    extra = (PENULTIMATE,) if role in unicam_roles and method.uses_gradients else ()
                    forward = forward_with_features(method, x, extra)
                    if method.uses_gradients:
                        shared_forward = forward
                explanation = method.from_forward(x, forward, TargetRule(settings.target_rule, labels=tuple(labels)))
            except MODEL_ERRORS as exc:
                explained.cams[(method_name, role)] = f"{method_name} failed: {first_line(exc)}"
                continue
            explained.cams[(method_name, role)] = explanation
            if role not in explained.probabilities:
                explained.probabilities[role] = torch.softmax(explanation.logits.double(), dim=1).cpu()
            if method.uses_gradients and role in unicam_roles and role not in forwards:
                forwards[role] = forward
            if settings.faithfulness_steps > 0:
                explained.faithfulness[(method_name, role)] = _faithfulness(model.backend, x, explanation, settings)
        if role not in explained.probabilities:
            logits = logits_or_none(model.backend, x)
            if logits is not None:
                explained.probabilities[role] = torch.softmax(logits.double(), dim=1).cpu()
    if settings.unicam:
        explained.unicam = _unicam_explanations(images, labels, models, roles, settings, reference,
                                                unicam_cache or UniCamCache(), forwards, inputs)
    return explained


def batch_rows(models: Mapping[str, ComparisonModel], explained: BatchExplanations,
               settings: ScanSettings) -> list[ImageResult]:
    """The rows (and maps on the images' grids) of an explained batch; runs no model."""
    images, labels = explained.images, explained.labels
    roles = [role for role in ROLES if role in models]
    grids = [image_grid(*image.rgb.shape[:2]) for image in images]
    results = [ImageResult(_image_columns(image, label, grid, models))
               for image, label, grid in zip(images, labels, grids)]
    if not images:
        return results
    class_names = labelling_class_names(models[r].backend.info.preprocessing.class_names for r in roles)
    masks = [mask_on_grid(image.mask, grid) for image, grid in zip(images, grids)]
    placed: dict[tuple[str, str], list[np.ndarray | None]] = {}
    for role in roles:
        for method_name in settings.methods:
            explanation = explained.cams.get((method_name, role))
            if isinstance(explanation, str):
                for result in results:
                    result.row[f"{map_key(method_name, role)}_note"] = explanation
                placed[(method_name, role)] = [None] * len(images)
            elif explanation is not None:
                placed[(method_name, role)] = _method_columns(
                    results, images, grids, masks, models, role, method_name, explanation,
                    explained.faithfulness.get((method_name, role)), settings)
    for role, probs in explained.probabilities.items():
        _prediction_columns(results, role, probs, labels, class_names, settings.top_k)
    _kl_column(results, explained.probabilities)
    for method_name in settings.methods:
        _agreement_columns(results, images, grids, models, method_name, placed)
    if settings.unicam:
        _unicam_columns(results, images, grids, masks, models, explained.unicam, settings)
    return results


class _Inputs:
    """The batch's model inputs, made once per input transform and device (models sharing a preset share them)."""

    def __init__(self, images):
        self.images, self.made = list(images), {}

    def of(self, backend) -> torch.Tensor:
        """The batch as ``backend``'s inputs, on its device."""
        key = (backend.info.preprocessing.input_transform, str(backend.device))
        if key not in self.made:
            self.made[key] = to_batch(self.images, backend.info.preprocessing).to(backend.device)
        return self.made[key]


def _shape_groups(images) -> dict[tuple[int, int], list[int]]:
    """Batch indices by image size: images of one size share a grid, crop windows and batched metrics."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.rgb.shape[:2]), []).append(i)
    return groups


def _image_columns(image: LoadedImage, label, grid, models) -> dict:
    roles = [role for role in ROLES if role in models]
    names = labelling_class_names(models[r].backend.info.preprocessing.class_names for r in roles)
    return {"label": label, "label_name": names[label] if label is not None and label < len(names) else None,
            "width": int(image.rgb.shape[1]), "height": int(image.rgb.shape[0]),
            "grid_height": grid.height, "grid_width": grid.width,
            "has_mask": image.mask is not None, "mask_share": float(image.mask.mean()) if image.mask is not None
            else None, "notes": "; ".join(image.notes) or None, "error": None}


def _method_columns(results, images, grids, masks, models, role, method_name, explanation, scores, settings):
    """Target, note, energy in mask and pointing game per image; deletion/insertion AUC; the maps."""
    key, model = map_key(method_name, role), models[role]
    maps = []
    for i, placed in enumerate(_placed_maps(explanation.low_res, images, grids, masks, model.backend, models)):
        maps.append(placed.values)
        row = results[i].row
        row[f"{key}_target"] = int(explanation.targets[i])
        row[f"{key}_note"] = explanation.notes[i]
        if masks[i] is not None:
            row[f"{key}_energy"], row[f"{key}_pointing"] = placed.energy, placed.pointing
        if settings.save_maps:
            results[i].maps[key] = placed.values.astype(np.float32)
    if scores is not None:
        for i, result in enumerate(results):
            result.row[f"{key}_deletion_auc"] = float(scores.deletion_auc[i])
            result.row[f"{key}_insertion_auc"] = float(scores.insertion_auc[i])
    return maps


@dataclass(frozen=True)
class _Placed:
    """One image's map on its pixel grid, with its energy in the mask and pointing game (NaN: no mask, or
    the crop covers no grid pixel)."""

    values: np.ndarray
    energy: float = math.nan
    pointing: float = math.nan


def _placed_maps(low_res, images, grids, masks, backend, models) -> list[_Placed]:
    """The batch's maps on their images' grids, and their mask measures over the pixels every model's crop
    covers (so all models' energies compare like with like, as ``compare_image``'s T and S do); computed
    per group of same-size images."""
    pre = backend.info.preprocessing
    placed: list[_Placed | None] = [None] * len(images)
    for shape, indices in _shape_groups(images).items():
        grid = grids[indices[0]]
        values = maps_on_grid(low_res[indices], shape, pre, grid)
        rows, cols = window_seen_by(shape, grid, *models.values())
        with_mask = [j for j, i in enumerate(indices) if masks[i] is not None]
        measures = {}
        if with_mask and values[0][rows, cols].size:
            seen = values[with_mask][:, rows, cols]
            inside = np.stack([masks[indices[j]][rows, cols] for j in with_mask])
            measures = dict(zip(with_mask, zip(energy_in_mask_rows(seen, inside), pointing_game_rows(seen, inside))))
        for j, i in enumerate(indices):
            energy, pointing = measures.get(j, (None, None))
            placed[i] = _Placed(values[j], _number(energy) if energy is not None else math.nan,
                                _number(pointing) if pointing is not None else math.nan)
    return placed


def _faithfulness(backend, x, explanation, settings):
    return deletion_insertion(x, explanation.maps, backend.logits, explanation.targets,
                              steps=settings.faithfulness_steps, baseline=settings.faithfulness_baseline,
                              batch_size=max(64, x.shape[0]))


def _number(value) -> float:
    return float(value.value)


def _prediction_columns(results, role, probs, labels, class_names, top_k) -> None:
    k = min(top_k, probs.shape[1])
    top = torch.topk(probs, k, dim=1)
    for result, label, classes, values in zip(results, labels, top.indices.tolist(), top.values.tolist()):
        row = result.row
        predicted = classes[0]
        row[f"{role}_predicted"] = predicted
        row[f"{role}_predicted_name"] = class_names[predicted] if predicted < len(class_names) else str(predicted)
        row[f"{role}_confidence"] = values[0]
        row[f"{role}_correct"] = None if label is None else bool(predicted == label)
        for rank in range(k):
            row[f"{role}_top{rank + 1}_class"] = classes[rank]
            row[f"{role}_top{rank + 1}_prob"] = values[rank]


def _kl_column(results, probabilities) -> None:
    """KL(T‖S) in nats (``dark_knowledge.kl_divergence``, as ``compare_image``)."""
    if "teacher" not in probabilities or "student" not in probabilities:
        return
    kl = np.atleast_1d(kl_divergence(probabilities["teacher"].numpy(), probabilities["student"].numpy()))
    for result, value in zip(results, kl):
        result.row["kl_teacher_student"] = float(value)


def _agreement_columns(results, images, grids, models, method_name, placed) -> None:
    """T–S Pearson, Spearman and top-20% IoU over the pixels both models see (as ``compare_image``)."""
    teacher, student = placed.get((method_name, "teacher")), placed.get((method_name, "student"))
    if teacher is None or student is None:
        return
    prefix = f"{column_name(method_name)}_ts"
    for shape, indices in _shape_groups(images).items():
        indices = [i for i in indices if teacher[i] is not None and student[i] is not None]
        if not indices:
            continue
        rows, cols = window_seen_by(shape, grids[indices[0]], models["teacher"], models["student"])
        a = np.stack([teacher[i][rows, cols] for i in indices])
        b = np.stack([student[i][rows, cols] for i in indices])
        if a[0].size == 0:
            for i in indices:
                results[i].row[f"{prefix}_note"] = "the Teacher's and the Student's crops do not overlap"
            continue
        metrics = zip(*agreement_rows(a, b))
        for i, values in zip(indices, metrics):
            row = results[i].row
            row[f"{prefix}_pearson"], row[f"{prefix}_spearman"], row[f"{prefix}_top_iou"] = map(_number, values)
            reasons = [value.reason for value in values if value.reason]
            row[f"{prefix}_note"] = reasons[0] if reasons else None


class _QueryRows:
    """The one attribute a UniCAM target's seed reads: the query's feature rows."""

    def __init__(self, activations):
        self.activations = activations


@dataclass(frozen=True, eq=False)
class BatchUniCamTarget(CamTarget):
    """Per-image UniCAM targets seeding one backward pass of a batch: query i's score depends on its own
    feature row only (the reference rows are constants), so the stacked seeds give every image its own
    ∂L_i/∂A_i in one VJP."""

    targets: tuple

    reads_logits = False

    def seed(self, forward) -> GradientSeed:
        layer = self.targets[0].feature_layer
        rows = forward.activations[layer]
        seeds = [t.seed(_QueryRows({layer: rows[i:i + 1]})) for i, t in enumerate(self.targets)]
        order = iter(seeds)  # the pipeline reads one note per image, in batch order

        def note(raw, grads):
            return next(order).blank_note(raw, grads)

        return GradientSeed({layer: torch.cat([s.cotangents[layer] for s in seeds])},
                            tuple(i for s in seeds for i in s.indices), seeds[0].rule, blank_note=note,
                            details={"unicam": [s.details.get("unicam", {}) for s in seeds]})


def _unicam_explanations(images, labels, models, roles, settings, reference, cache, forwards,
                         inputs) -> dict[str, Explanation | str]:
    """The distilled and residual UniCAM maps of the batch (or why each failed), from the Grad-CAM forwards
    when they captured UniCAM's layers."""
    explained = {}
    for key in UNICAM_KEYS:
        x_role, y_role = unicam_pair(key, roles)
        try:
            if x_role not in models or y_role not in models:
                raise ValueError(f"needs the {x_role} and the {y_role} model")
            if reference is None:
                raise ValueError("no UniCAM reference set")
            x_model, y_model = models[x_role], models[y_role]
            if x_model.layer is None:
                raise ValueError(x_model.note or "no target layer chosen")
            explainer = cache.explainer(x_model, y_model, reference, settings.unicam_variant, models.get("teacher"))
            x_forward, y_forward = forwards.get(x_role), forwards.get(y_role)
            if x_forward is None or getattr(x_forward, "grad_layer", None) != explainer.layer \
                    or explainer.feature_layer not in x_forward.activations:
                x_forward = UniCamCAM(x_model.backend, layer=explainer.layer).run_forward(
                    inputs.of(x_model.backend), [explainer.feature_layer])
            if y_forward is None or explainer.feature_layer not in y_forward.activations:
                y_forward = y_model.backend.forward(inputs.of(y_model.backend), [explainer.feature_layer])
            query_y = y_forward.activations[explainer.feature_layer]
            target = BatchUniCamTarget(tuple(explainer.target_for(query_y[i:i + 1], image, label)
                                             for i, (image, label) in enumerate(zip(images, labels))))
            size = (x_model.backend.info.preprocessing.input_size,) * 2
            explained[key] = UniCamCAM(x_model.backend, layer=explainer.layer).explain_forward(x_forward, target, size)
        except MODEL_ERRORS as exc:
            explained[key] = f"UniCAM failed: {first_line(exc)}"
    return explained


def _unicam_columns(results, images, grids, masks, models, explained, settings) -> None:
    roles = [role for role in ROLES if role in models]
    for key in UNICAM_KEYS:
        column, explanation = f"unicam_{key}", explained[key]
        if isinstance(explanation, str):
            for result in results:
                result.row[f"{column}_note"] = explanation
            continue
        x_model = models[unicam_pair(key, roles)[0]]
        details = explanation.details.get("unicam", [])
        placed_maps = _placed_maps(explanation.low_res, images, grids, masks, x_model.backend, models)
        for i, (result, placed) in enumerate(zip(results, placed_maps)):
            result.row[f"{column}_note"] = explanation.notes[i]
            result.row[f"{column}_score"] = details[i].get("score") if i < len(details) else None
            if masks[i] is not None:
                result.row[f"{column}_energy"] = placed.energy
            if settings.save_maps:
                result.maps[column] = placed.values.astype(np.float32)
