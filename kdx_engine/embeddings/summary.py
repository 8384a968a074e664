"""The embedding numbers of a set of images as one record: per model the leave-one-out k-NN accuracy
of its penultimate features (overall and per class), per pair of models the neighbourhood overlap;
saves itself as JSON, and the dark knowledge of the same outputs beside it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..dark_knowledge import DEFAULT_TAU, MEAN_INTERVAL, PROPORTION_INTERVAL, DarkKnowledge, json_ready, dark_knowledge
from .features import FEATURE_LAYER, ModelOutputs
from .neighbours import (DEFAULT_K, KnnAccuracy, NeighbourhoodOverlap, knn_accuracy, neighbourhoods,
                         overlap_of_neighbourhoods)

PAIRS = (("teacher", "student"), ("teacher", "base"), ("student", "base"))


@dataclass(frozen=True)
class EmbeddingMetrics:
    """k-NN accuracy per model and neighbourhood overlap per pair (``"teacher-student"``, …)."""

    n: int
    n_labelled: int
    k: int
    knn: dict[str, KnnAccuracy]
    overlap: dict[str, NeighbourhoodOverlap]
    class_names: tuple[str, ...] = ()
    feature_layer: str = FEATURE_LAYER
    distance: str = "Euclidean, on the raw penultimate features"
    notes: tuple[str, ...] = ()
    interval: dict = field(default_factory=lambda: {"knn": PROPORTION_INTERVAL, "overlap": MEAN_INTERVAL})

    def to_json(self) -> dict:
        return json_ready(asdict(self))


def embedding_metrics(outputs: ModelOutputs, k: int = DEFAULT_K) -> EmbeddingMetrics:
    """k-NN accuracy of each model's features and the overlap of every pair of loaded models."""
    labels = outputs.labels
    n_labelled = sum(label is not None for label in labels)
    if outputs.n < k + 1:
        raise ValueError(f"k = {k} neighbours need at least {k + 1} images, got {outputs.n}")
    notes = []
    if n_labelled >= k + 1:
        knn = {role: knn_accuracy(features, labels, k) for role, features in outputs.features.items()}
    else:
        knn = {}
        notes.append(f"k-NN accuracy not computed: {n_labelled} labelled image(s), k = {k} needs {k + 1}")
    found = {role: neighbourhoods(features, k) for role, features in outputs.features.items()}  # one pass each
    overlap = {f"{a}-{b}": overlap_of_neighbourhoods(found[a][0], found[b][0], labels, k)
               for a, b in PAIRS if a in found and b in found}
    for role, (_, tied_rows) in found.items():
        tied = int(tied_rows.sum())
        if tied:
            notes.append(f"{role}: {tied} of {outputs.n} image(s) have another image tied at their k-th neighbour's "
                         "distance (identical features, e.g. duplicated images): their neighbourhoods, k-NN votes "
                         "and overlaps are decided by tie-breaking (lower index first), not by distance")
    return EmbeddingMetrics(outputs.n, n_labelled, k, knn, overlap, outputs.class_names, notes=tuple(notes))


def outputs_dark_knowledge(outputs: ModelOutputs, tau: float = DEFAULT_TAU) -> DarkKnowledge:
    """Dark knowledge (KL against τ, similar classes, agreement) of the same outputs' logits."""
    return dark_knowledge(outputs.logits, outputs.labels, tau, class_names=outputs.class_names)
