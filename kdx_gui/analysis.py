"""The engine calls behind the window's views, run inside worker jobs (never on the GUI thread).

Each function takes plain records from the session and a ``Progress``, calls the engine's public API
and returns plain records (numpy arrays, floats) that the views draw. Importing this module imports
torch, so GUI modules import it only inside job functions.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdx_engine.cams import cam_method, compare_maps, pearson, resolve_targets
from kdx_engine.data import display_image, load_images, collect_image_paths, to_batch, transform_mask
from kdx_engine.models import default_target_layer, load_model, probe_layers, stage_layers

from .engine import EngineStatus
from .session import (
    ROLE_LETTERS,
    ROLE_TITLES,
    ROLES,
    Comparison,
    ImagePrediction,
    LoadedModel,
    PanelResult,
    ViewSettings,
)

BATCH = 32
CACHE_SIZE = 8


def load_slot_model(path: str, trust_pickle: bool, progress) -> LoadedModel:
    """Load a model file and probe its layers for the slot's picker."""
    progress.update(0.05, f"reading {Path(path).name}")
    backend = load_model(path, trust_pickle=trust_pickle)
    progress.update(0.6, "probing layers")
    layers = probe_layers(backend)
    try:
        target, note = default_target_layer(layers), None
    except ValueError as exc:
        target, note = None, str(exc)
    return LoadedModel(backend, tuple(layers), target, tuple(stage_layers(layers)), trust_pickle, note)


def load_gallery_images(paths: list[str], progress):
    """Images under ``paths`` (folders recursively) and the errors of files that are not images."""
    progress.update(0.0, "listing files")
    found = collect_image_paths(paths)
    images, errors = [], []
    for start in range(0, len(found), 16):
        progress.update(start / max(len(found), 1), f"{start}/{len(found)} images")
        loaded, failed = load_images(found[start:start + 16])
        images += loaded
        errors += failed
    return images, errors


# --- per-image predictions and the T–S map correlation for the gallery --------------------------


def predict_gallery(models: dict[str, LoadedModel], items: list, labels: list, settings: ViewSettings,
                    progress) -> dict[int, ImagePrediction]:
    """Each model's prediction for every image, and Pearson's r between the Teacher's and the
    Student's maps (current method and target rule) for sorting."""
    classes: dict[int, dict[str, int]] = {item.id: {} for item in items}
    confidence: dict[int, dict[str, float]] = {item.id: {} for item in items}
    correlation = {item.id: (math.nan, "needs a Teacher and a Student") for item in items}
    steps = max(len(items), 1) * (len(models) + 1)
    done = 0
    for role, model in models.items():
        for start in range(0, len(items), BATCH):
            chunk = items[start:start + BATCH]
            progress.update(done / steps, f"{ROLE_TITLES[role]}: predictions {start}/{len(items)}")
            x = to_batch([item.image for item in chunk], model.info.preprocessing)
            probs = torch.softmax(model.backend.logits(x).double(), dim=1)
            best = probs.max(dim=1)
            for item, k, p in zip(chunk, best.indices.tolist(), best.values.tolist()):
                classes[item.id][role], confidence[item.id][role] = k, p
            done += len(chunk)
    teacher, student = models.get("teacher"), models.get("student")
    if teacher is not None and student is not None and teacher.target_layer and student.target_layer:
        for start in range(0, len(items), BATCH):
            chunk, chunk_labels = items[start:start + BATCH], labels[start:start + BATCH]
            progress.update(done / steps, f"T–S map correlation {start}/{len(items)}")
            try:
                t_maps, _ = _cam_maps(teacher, [i.image for i in chunk], chunk_labels, settings)
                s_maps, _ = _cam_maps(student, [i.image for i in chunk], chunk_labels, settings)
            except (ValueError, RuntimeError, KeyError) as exc:  # predictions stand without the sort key
                for item in chunk:
                    correlation[item.id] = (math.nan, f"{settings.method} failed: {_first_line(exc)}")
                done += len(chunk)
                continue
            size = max(t_maps.shape[-1], s_maps.shape[-1])
            t_maps, s_maps = _resized(t_maps, size), _resized(s_maps, size)
            for item, a, b in zip(chunk, t_maps, s_maps):
                value = pearson(a.numpy(), b.numpy())
                correlation[item.id] = (value.value, value.reason)
            done += len(chunk)
    progress.update(1.0, "done")
    return {item.id: ImagePrediction(classes[item.id], confidence[item.id], *correlation[item.id]) for item in items}


def _cam_maps(model: LoadedModel, images: list, labels: list, settings: ViewSettings):
    """Raw maps (N×S×S) of one model at its target layer, and the Explanation."""
    x = to_batch(images, model.info.preprocessing)
    logits = model.backend.logits(x)
    class_index = min(settings.class_index, logits.shape[1] - 1)
    targets = resolve_targets(settings.target_rule, logits, labels=labels, class_index=class_index)
    explanation = cam_method(settings.method)(model.backend, layer=model.target_layer)(x, targets, settings.target_rule)
    return explanation.maps, explanation


def _resized(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else size
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].double(), size=size, mode="bilinear", align_corners=False)[:, 0]


# --- the comparison of the current image ---------------------------------------------------------


def display_role(models: dict[str, LoadedModel]) -> str | None:
    """The model whose preprocessing frames the Input panel: the Teacher's, else the first loaded."""
    for role in ROLES:
        if role in models:
            return role
    return None


def compare_image(models: dict[str, LoadedModel], item, label: int | None, settings: ViewSettings,
                  engine: EngineStatus, references: list, cache: dict, progress) -> Comparison:
    """All panels for one image: input, each model's CAM, UniCAM distilled/residual, and T − S."""
    frame_role = display_role(models)
    image = item.image
    if frame_role is None:
        frame = image.rgb
        mask = image.mask
    else:
        preprocessing = models[frame_role].info.preprocessing
        frame = display_image(image, preprocessing)
        mask = transform_mask(image.mask, preprocessing) if image.mask is not None else None
    size = frame.shape[:2]
    panels = {"input": PanelResult("input", "Input", _input_subtitle(item, label, models), frame, kind="image")}
    probabilities: dict[str, np.ndarray] = {}
    normalised: dict[str, np.ndarray] = {}
    for index, role in enumerate(ROLES):
        progress.update(index / 6, f"{settings.method}: {ROLE_TITLES[role]}")
        model = models.get(role)
        if model is None:
            panels[role] = PanelResult(role, ROLE_TITLES[role], message=f"no {ROLE_TITLES[role]} model loaded: "
                                       f"drop a model file on the {ROLE_TITLES[role]} slot")
            continue
        panels[role], probs, norm = _model_panel(role, model, image, label, settings, size)
        probabilities[role] = probs
        if norm is not None:
            normalised[role] = norm
    panels["difference"] = _difference_panel(normalised)
    progress.update(3 / 6, "UniCAM")
    for key in ("distilled", "residual"):
        panels[key] = _unicam_panel(key, models, item, label, settings, engine, references, cache, size, progress)
    class_names = next((m.class_names for r, m in models.items()), ())
    comparison = {}
    if "teacher" in normalised and "student" in normalised:  # raw maps: the energy share needs them
        metrics = compare_maps(panels["teacher"].values, panels["student"].values, mask=mask)
        comparison = metrics.to_dict()
    progress.update(1.0, "done")
    return Comparison(
        image_id=item.id, panels=panels, probabilities=probabilities, class_names=tuple(class_names),
        kl_teacher_student=_kl(probabilities.get("teacher"), probabilities.get("student")),
        map_comparison=comparison, label=label,
    )


def _input_subtitle(item, label, models) -> str:
    names = next((m.class_names for m in models.values()), ())
    truth = f"true: {names[label]}" if label is not None and label < len(names) else "true class unknown"
    return f"{item.name} · {truth}"


def _model_panel(role, model: LoadedModel, image, label, settings, size):
    """The model's CAM on the display frame, its class probabilities and its normalised map."""
    title = ROLE_TITLES[role]
    x = to_batch([image], model.info.preprocessing)
    logits = model.backend.logits(x)
    probs = torch.softmax(logits.double(), dim=1)[0].numpy()
    if model.target_layer is None:
        return PanelResult(role, title, message=model.note or "no target layer chosen"), probs, None
    try:
        maps, explanation = _cam_maps(model, [image], [label], settings)
    except (ValueError, RuntimeError, KeyError) as exc:
        return PanelResult(role, title, message=f"{settings.method} failed: {_first_line(exc)}"), probs, None
    target = explanation.targets[0]
    names = model.class_names
    subtitle = f"{settings.method} @ {model.target_layer} · target {names[target] if target < len(names) else target}" \
               f" ({settings.target_rule}) · p={probs[target]:.2f}"
    values = _resized(maps, size)[0].numpy()
    norm = _resized(explanation.normalised(), size)[0].numpy()
    return PanelResult(role, title, subtitle, values, explanation.notes[0]), probs, norm


def _difference_panel(normalised: dict[str, np.ndarray]) -> PanelResult:
    title = "T − S"
    missing = [ROLE_TITLES[r] for r in ("teacher", "student") if r not in normalised]
    if missing:
        return PanelResult("difference", title, message=f"needs the {' and '.join(missing)} map"
                           + ("s" if len(missing) > 1 else ""), kind="difference", group="difference")
    diff = normalised["teacher"] - normalised["student"]
    return PanelResult("difference", title, "Teacher − Student, each map min–max scaled", diff,
                       kind="difference", group="difference")


UNICAM_TITLES = {"distilled": "Distilled", "residual": "Residual"}


def unicam_pair(key: str, models: dict) -> tuple[str | None, str | None]:
    """(explained X, removed Y) for the distilled or residual map; Teacher stands in for a missing Base."""
    other = "base" if "base" in models else "teacher"
    return ("student", other) if key == "distilled" else (other, "student")


def _unicam_panel(key, models, item, label, settings, engine, references, cache, size, progress) -> PanelResult:
    x_role, y_role = unicam_pair(key, models)
    title = f"{UNICAM_TITLES[key]} ({ROLE_LETTERS[x_role]}|{ROLE_LETTERS[y_role]})"
    if not engine.has("unicam"):
        return PanelResult(key, title, message=engine.why_missing("unicam"), group="unicam")
    needed = [ROLE_TITLES[r] for r in (x_role, y_role) if r not in models]
    if needed:
        return PanelResult(key, title, message=f"needs a {' and a '.join(needed)} model", group="unicam")
    x_model, y_model = models[x_role], models[y_role]
    teacher = models.get("teacher")
    try:
        reference = _reference(settings, references, x_model.class_names, cache)
    except (ValueError, OSError) as exc:
        return PanelResult(key, title, message=f"no UniCAM reference set: {_first_line(exc)}. Add images to the "
                           "gallery, choose a reference folder, or lower n", group="unicam")
    try:
        explainer = _unicam(x_model, y_model, reference, settings, teacher, cache)
        progress.update(0.6 if key == "distilled" else 0.8, f"UniCAM {title}")
        explanation = explainer.explain(item.image, label)
    except (ValueError, RuntimeError, KeyError) as exc:
        return PanelResult(key, title, message=f"UniCAM failed: {_first_line(exc)}", group="unicam")
    values = _resized(explanation.maps, size)[0].numpy()
    source = Path(settings.reference_folder).name if settings.reference_folder else "gallery"
    subtitle = f"{settings.unicam_variant} · {x_model.target_layer} · ref {source}, n={settings.reference_n}"
    return PanelResult(key, title, subtitle, values, explanation.notes[0], group="unicam")


def _reference(settings: ViewSettings, references: list, class_names, cache: dict):
    """The UniCAM reference set: a folder, or the gallery's images with their labels."""
    from kdx_engine.unicam import ReferenceSet

    if settings.reference_folder:
        key = ("reference", settings.reference_folder, settings.reference_n, tuple(class_names))
        build = lambda: ReferenceSet.from_folder(settings.reference_folder, n=settings.reference_n, seed=0,  # noqa: E731
                                                 class_names=class_names or None)
    else:
        key = ("reference", tuple(item.id for item, _ in references), settings.reference_n)
        images = [item.image for item, _ in references]
        labels = [label for _, label in references]
        build = lambda: ReferenceSet.from_images(images, labels, n=settings.reference_n, seed=0)  # noqa: E731
    return _cached(cache, key, build)


def _unicam(x_model: LoadedModel, y_model: LoadedModel, reference, settings: ViewSettings,
            teacher: LoadedModel | None, cache: dict):
    """One UniCam per (models, layer, reference, variant): it keeps the reference labels between queries.
    The Teacher labels reference images without a true label."""
    from kdx_engine.unicam import UniCam

    teacher_backend = teacher.backend if teacher is not None else None
    key = ("unicam", id(x_model.backend), id(y_model.backend), x_model.target_layer, reference.key,
           settings.unicam_variant, id(teacher_backend))
    return _cached(cache, key, lambda: UniCam(x_model.backend, y_model.backend, reference, layer=x_model.target_layer,
                                              variant=settings.unicam_variant, teacher=teacher_backend))


def _cached(cache: dict, key, build):
    """A small LRU shared by the jobs (all on the one worker thread)."""
    order = cache.setdefault("__order__", OrderedDict())
    if key in order:
        order.move_to_end(key)
        return order[key]
    value = build()
    order[key] = value
    while len(order) > CACHE_SIZE:
        order.popitem(last=False)
    return value


def _kl(p: np.ndarray | None, q: np.ndarray | None) -> float | None:
    """KL(P‖Q) in nats between two models' class probabilities."""
    if p is None or q is None or p.shape != q.shape:
        return None
    p = np.clip(p, 1e-12, 1.0)
    q = np.clip(q, 1e-12, 1.0)
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__



def run_dataset_metrics(models: dict[str, LoadedModel], folder: str, resamples: int, progress):
    """FSS, CKA, RS and partial RS over a dataset folder (``class_name/image``) with the slots' stages."""
    from kdx_engine.data import ImageFolderDataset
    from kdx_engine.metrics import dataset_metrics

    teacher, student, base = models.get("teacher"), models.get("student"), models.get("base")
    if teacher is None or student is None:
        raise ValueError("dataset metrics need a Teacher and a Student model")
    dataset = ImageFolderDataset(folder, class_names=teacher.class_names)
    stages = {role: list(model.stages) for role, model in models.items() if model.stages}
    return dataset_metrics(teacher.backend, student.backend, dataset, base=base.backend if base else None,
                           resamples=resamples, progress=progress, stages=stages)


def read_attention(sources: dict[str, str], engine: EngineStatus, progress) -> dict[str, "AttentionRecord"]:
    """VAM attention and KDExplainer routing of each checkpoint (name → path), read from its weights."""
    from kdx_engine.models import read_sidecar

    from .session import AttentionRecord

    records = {}
    for index, (name, path) in enumerate(sources.items()):
        progress.update(index / max(len(sources), 1), f"reading {Path(path).name}")
        try:
            state = _checkpoint_state(path, engine)
        except Exception as exc:  # any unreadable file becomes a reason shown in the view
            reason = f"{Path(path).name}: no readable state_dict ({_first_line(exc)})"
            records[name] = AttentionRecord(name, path, vam_reason=reason, routing_reason=reason)
            continue
        try:
            sidecar = read_sidecar(path)
        except ValueError:
            sidecar = None
        fields: dict = {"class_names": tuple(sidecar.class_names) if sidecar else ()}
        fields.update(_vam_fields(state, engine))
        fields.update(_routing_fields(state, engine))
        records[name] = AttentionRecord(name, path, **fields)
    progress.update(1.0, "done")
    return records


def _checkpoint_state(path: str, engine: EngineStatus):
    if not engine.has("vam"):
        raise ValueError(engine.why_missing("vam"))
    from kdx_engine.vam import vam_checkpoint_state

    return vam_checkpoint_state(path)


def _vam_fields(state, engine: EngineStatus) -> dict:
    from kdx_engine.vam import layer_attention

    try:
        return {"vam_layers": tuple(layer_attention(state))}
    except ValueError as exc:
        return {"vam_reason": _first_line(exc)}


def _routing_fields(state, engine: EngineStatus) -> dict:
    if not engine.has("hme"):
        return {"routing_reason": engine.why_missing("hme")}
    from kdx_engine.hme import class_routing_paths, hard_tree, mean_routing_entropy, routing_matrices

    try:
        matrices = routing_matrices(state)
    except ValueError as exc:
        return {"routing_reason": _first_line(exc)}
    return {"routing": tuple(matrices), "class_paths": tuple(class_routing_paths(matrices)),
            "routing_entropy": tuple(mean_routing_entropy(matrices)), "tree": hard_tree(state)}
