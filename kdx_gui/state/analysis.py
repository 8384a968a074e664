"""The engine calls behind the window's views, run inside worker jobs (never on the GUI thread).

Each function takes plain records from the session and a ``Progress``, calls the engine's public API
and returns plain records (numpy arrays, floats) that the views draw. Importing this module imports
torch, so GUI modules import it only inside job functions.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from kdx_engine.comparison import ComparisonModel, compare_image as engine_compare_image, gallery_predictions
from kdx_engine.data import collect_image_paths, load_images
from kdx_engine.labels import labelling_class_names
from kdx_engine.models import load_model, probe_layers, stage_layers, target_layer_or_reason

from kdx_gui.state.engine import EngineStatus
from kdx_gui.state.session import LoadedModel, ViewSettings
from kdx_gui.text import first_line

REFERENCE_CACHE_SIZE = 4


def load_slot_model(path: str, trust_pickle: bool, progress, which: str | None = None,
                    arch: str | None = None) -> LoadedModel:
    """Load a model file (``which`` of a two-model checkpoint, ``arch`` for a state_dict) and probe its
    layers for the slot's picker."""
    progress.update(0.05, f"reading {Path(path).name}" + (f" ({which})" if which else ""))
    backend = load_model(path, trust_pickle=trust_pickle, which=which, arch=arch)
    progress.update(0.6, "probing layers")
    layers = probe_layers(backend)
    target, note = target_layer_or_reason(layers)
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


def engine_models(models: dict[str, LoadedModel]) -> dict[str, ComparisonModel]:
    """The slots' models as the engine's comparison takes them."""
    return {role: ComparisonModel(m.backend, m.target_layer, m.note) for role, m in models.items()}


def predict_gallery(models: dict[str, LoadedModel], items: list, labels: list, settings: ViewSettings,
                    progress) -> dict:
    """Each model's prediction for every image and the T–S map correlation (the gallery's sort key)."""
    records = gallery_predictions(engine_models(models), [item.image for item in items], labels,
                                  settings.for_engine(), progress=progress)
    return {item.id: record for item, record in zip(items, records)}


class WorkerCaches:
    """What the analysis jobs keep between runs (all on the one worker thread): UniCAM explainers with
    their reference rows, and the latest reference sets; both bounded."""

    def __init__(self):
        from kdx_engine.comparison import UniCamCache

        self.unicam = UniCamCache()
        self.references: OrderedDict = OrderedDict()

    def reference(self, key, build):
        if key in self.references:
            self.references.move_to_end(key)
            return self.references[key]
        value = build()
        self.references[key] = value
        while len(self.references) > REFERENCE_CACHE_SIZE:
            self.references.popitem(last=False)
        return value


def compare_image(models: dict[str, LoadedModel], item, label: int | None, settings: ViewSettings,
                  engine: EngineStatus, references: list, caches: WorkerCaches, progress, panels=None):
    """The engine's comparison of one gallery image with the window's settings."""
    reference, problem = None, None
    if not engine.has("unicam"):
        problem = engine.why_missing("unicam")
    elif "student" in models and ("base" in models or "teacher" in models):
        try:
            reference = _reference(settings, references, labelling_class_names(m.class_names for m in models.values()),
                                   caches)
        except (ValueError, OSError) as exc:
            problem = first_line(exc)
    kwargs = {"panels": panels} if panels is not None else {}
    return engine_compare_image(engine_models(models), item.image, label, settings.for_engine(), reference=reference,
                                unicam_cache=caches.unicam, reference_problem=problem, image_id=item.id,
                                progress=progress, **kwargs)


def export_figure(models, items_and_labels: list, settings: ViewSettings, engine: EngineStatus, gallery: list,
                  caches: WorkerCaches, request, path: str, overwrite: bool, progress, dataset_folder=None):
    """The comparisons of the chosen images (the gallery's other images as each one's UniCAM reference
    when no folder is set), exported as a figure with its data folder; the request's plots are drawn
    over ``dataset_folder``."""
    import dataclasses

    from kdx_engine.comparison.export import check_export_location, export_comparisons
    from kdx_engine.embeddings import dataset_plots
    from kdx_engine.figures.figure_panel import FigureOptions
    from kdx_engine.jobs import Progress

    options = FigureOptions(columns=request.columns, format=request.format, dpi=request.dpi)
    check_export_location(path, overwrite)
    if request.plots and not dataset_folder:
        raise ValueError("the plots under the rows need a dataset folder (Analysis ▸ Dataset metrics… sets it)")
    comparisons, share = [], 0.6 if request.plots else 0.9  # of the progress bar, the rest for the plots
    for index, (item, label) in enumerate(items_and_labels):
        progress.update(share * index / max(len(items_and_labels), 1), f"comparing {item.name}")
        references = [(other, other_label) for other, other_label in gallery if other.id != item.id]
        comparisons.append(compare_image(models, item, label, settings, engine, references, caches, None,
                                         panels=("input", *request.columns)))
    provenance = {"seed": 0}
    if request.plots:
        over_dataset = Progress(lambda fraction, message: progress.update(share + (0.9 - share) * fraction,
                                                                          f"dataset plots: {message}"))
        plots, provenance["distillation_plots"] = dataset_plots(
            {role: m.backend for role, m in models.items()}, dataset_folder, request.plots, seed=0,
            progress=over_dataset)  # Cancel reaches it through progress.update
        options = dataclasses.replace(options, plots=plots)
    progress.update(0.9, f"writing {Path(path).name}")
    return export_comparisons(comparisons, path, options, overwrite=overwrite, provenance=provenance)


def _reference(settings: ViewSettings, references: list, class_names, caches: WorkerCaches):
    """The UniCAM reference set: a folder, or the gallery's images with their labels."""
    from kdx_engine.unicam import ReferenceSet

    if settings.reference_folder:
        key = ("folder", settings.reference_folder, settings.reference_n, tuple(class_names))
        return caches.reference(key, lambda: ReferenceSet.from_folder(
            settings.reference_folder, n=settings.reference_n, seed=0, class_names=class_names or None))
    key = ("gallery", tuple(item.id for item, _ in references), settings.reference_n)
    images = [item.image for item, _ in references]
    labels = [label for _, label in references]
    return caches.reference(key, lambda: ReferenceSet.from_images(images, labels, n=settings.reference_n, seed=0))


def run_dataset_metrics(models: dict[str, LoadedModel], folder: str, progress):
    """FSS, CKA, RS and partial RS over a dataset folder (``class_name/image``) with the slots' stages."""
    from kdx_engine.data import ImageFolderDataset
    from kdx_engine.metrics import dataset_metrics

    teacher, student, base = models.get("teacher"), models.get("student"), models.get("base")
    if teacher is None or student is None:
        raise ValueError("dataset metrics need a Teacher and a Student model")
    dataset = ImageFolderDataset(folder, class_names=labelling_class_names(m.class_names for m in models.values()))
    stages = {role: list(model.stages) for role, model in models.items() if model.stages}
    return dataset_metrics(teacher.backend, student.backend, dataset, base=base.backend if base else None,
                           progress=progress, stages=stages)


def read_attention(sources: dict[str, str], engine: EngineStatus, progress) -> dict[str, "AttentionRecord"]:
    """VAM attention and KDExplainer routing of each checkpoint (name → path), read from its weights."""
    from kdx_engine.models import read_sidecar

    from kdx_gui.state.session import AttentionRecord

    records = {}
    for index, (name, path) in enumerate(sources.items()):
        progress.update(index / max(len(sources), 1), f"reading {Path(path).name}")
        try:
            state = _checkpoint_state(path, engine)
        except Exception as exc:  # any unreadable file becomes a reason shown in the view
            reason = f"{Path(path).name}: no readable state_dict ({first_line(exc)})"
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
        return {"vam_reason": first_line(exc)}


def _routing_fields(state, engine: EngineStatus) -> dict:
    if not engine.has("hme"):
        return {"routing_reason": engine.why_missing("hme")}
    from kdx_engine.hme import class_routing_paths, hard_tree, mean_routing_entropy, routing_matrices

    try:
        matrices = routing_matrices(state)
    except ValueError as exc:
        return {"routing_reason": first_line(exc)}
    return {"routing": tuple(matrices), "class_paths": tuple(class_routing_paths(matrices)),
            "routing_entropy": tuple(mean_routing_entropy(matrices)), "tree": hard_tree(state)}
