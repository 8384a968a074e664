"""Neighbourhoods in feature space: each image's k nearest neighbours (Euclidean, itself left out),
how well they separate the classes (leave-one-out k-NN accuracy per class), and how far two models
agree on them (neighbourhood overlap: the share of an image's k neighbours that both models name).

Intervals: Wilson score for accuracies (a proportion of images), a normal interval of the mean for
overlaps (see ``kdx_engine.dark_knowledge``). Two models with unrelated features overlap by
k/(n − 1) on average (``chance``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dark_knowledge import LEVEL, mean_interval, proportion_interval
from ..values import Value

DEFAULT_K = 10
CHUNK = 1024  # query rows per block of the distance matrix (memory O(CHUNK·n))


def _checked(features, k: int) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be an n×d array, got shape {x.shape}")
    if not 1 <= k <= x.shape[0] - 1:
        raise ValueError(f"k = {k} neighbours need at least k + 1 = {k + 1} images, got {x.shape[0]}")
    return x


def nearest_neighbours(features, k: int = DEFAULT_K) -> np.ndarray:
    """n×k indices of each image's k nearest other images, nearest first (ties: lower index first)."""
    return neighbourhoods(features, k)[0]


def tied_neighbourhoods(features, k: int = DEFAULT_K) -> int:
    """How many images have another image at exactly their k-th nearest distance beyond the k chosen
    (identical or duplicated images): their neighbourhood is then decided by tie-breaking, not distance."""
    return int(neighbourhoods(features, k)[1].sum())


def neighbourhoods(features, k: int = DEFAULT_K) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_neighbours`` and, per image, whether its k-th and (k+1)-th distances are equal (one
    pass over the distances gives both)."""
    x = _checked(features, k)
    n = x.shape[0]
    squares = np.einsum("ij,ij->i", x, x)
    result, tied = np.empty((n, k), dtype=np.int64), np.zeros(n, dtype=bool)
    for start in range(0, n, CHUNK):
        rows = slice(start, min(start + CHUNK, n))
        d2 = squares[rows, None] + squares[None, :] - 2.0 * x[rows] @ x.T
        d2[np.arange(d2.shape[0]), np.arange(start, rows.stop)] = np.inf
        rounded = np.round(d2, 9)
        order = np.lexsort((np.broadcast_to(np.arange(n), d2.shape), rounded), axis=1)
        result[rows] = order[:, :k]
        if k < n - 1:
            kth = np.take_along_axis(rounded, order[:, k - 1:k + 1], axis=1)
            tied[rows] = kth[:, 0] == kth[:, 1]
    return result, tied


@dataclass(frozen=True)
class ClassValues:
    """One value over all images and one per class (class index → Value; classes without images absent)."""

    overall: Value
    per_class: dict[int, Value]
    counts: dict[int, int]


@dataclass(frozen=True)
class KnnAccuracy(ClassValues):
    """Leave-one-out k-NN accuracy of a model's features (majority vote of the k nearest labelled images)."""

    k: int = DEFAULT_K


@dataclass(frozen=True)
class NeighbourhoodOverlap(ClassValues):
    """Mean share of each image's k neighbours both models agree on; ``chance`` = k/(n − 1)."""

    k: int = DEFAULT_K
    chance: float = 0.0


def _vote(neighbour_labels: np.ndarray, classes: int) -> np.ndarray:
    """The most frequent label of each row; a tie goes to the class met first (the nearest)."""
    counts = np.zeros((neighbour_labels.shape[0], classes), dtype=np.int64)
    np.add.at(counts, (np.arange(neighbour_labels.shape[0])[:, None], neighbour_labels), 1)
    best = counts.max(axis=1, keepdims=True)
    tied = counts[np.arange(counts.shape[0])[:, None], neighbour_labels] == best
    return neighbour_labels[np.arange(neighbour_labels.shape[0]), tied.argmax(axis=1)]


def knn_accuracy(features, labels, k: int = DEFAULT_K, level: float = LEVEL) -> KnnAccuracy:
    """Leave-one-out k-NN accuracy overall and per true class, among the labelled images only."""
    labels = np.asarray([-1 if label is None else int(label) for label in labels], dtype=np.int64)
    x = np.asarray(features, dtype=np.float64)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {x.shape[0]} images")
    known = np.flatnonzero(labels >= 0)
    neighbours = nearest_neighbours(x[known], k)
    truth = labels[known]
    predicted = _vote(truth[neighbours], int(truth.max()) + 1)
    correct = predicted == truth
    per_class = {int(c): proportion_interval(int(correct[truth == c].sum()), int((truth == c).sum()), level)
                 for c in np.unique(truth)}
    counts = {int(c): int((truth == c).sum()) for c in np.unique(truth)}
    return KnnAccuracy(proportion_interval(int(correct.sum()), int(truth.size), level), per_class, counts, k)


def overlap_per_image(features_a, features_b, k: int = DEFAULT_K) -> np.ndarray:
    """For each image, |N_a(i) ∩ N_b(i)| / k with N the k nearest neighbours in each model's features."""
    return _shared_shares(nearest_neighbours(features_a, k), nearest_neighbours(features_b, k), k)


def _shared_shares(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"the two models' features cover different images: {a.shape[0]} vs {b.shape[0]}")
    hits = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return hits / k


def neighbourhood_overlap(features_a, features_b, labels, k: int = DEFAULT_K,
                          level: float = LEVEL) -> NeighbourhoodOverlap:
    """Mean neighbourhood overlap of two models overall and per true class, with intervals."""
    return overlap_of_neighbourhoods(nearest_neighbours(features_a, k), nearest_neighbours(features_b, k), labels,
                                     k, level)


def overlap_of_neighbourhoods(a: np.ndarray, b: np.ndarray, labels, k: int = DEFAULT_K,
                              level: float = LEVEL) -> NeighbourhoodOverlap:
    """``neighbourhood_overlap`` from the two models' n×k neighbour indices (``nearest_neighbours``)."""
    shares = _shared_shares(a, b, k)
    labels = np.asarray([-1 if label is None else int(label) for label in labels], dtype=np.int64)
    if labels.shape[0] != shares.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {shares.shape[0]} images")
    classes = [int(c) for c in np.unique(labels[labels >= 0])]
    per_class = {c: mean_interval(shares[labels == c], level, (0.0, 1.0)) for c in classes}
    counts = {c: int((labels == c).sum()) for c in classes}
    return NeighbourhoodOverlap(mean_interval(shares, level, (0.0, 1.0)), per_class, counts, k,
                                k / (shares.shape[0] - 1))
