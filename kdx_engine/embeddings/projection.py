"""2-D projections of features: PCA (exact, numpy SVD) always; t-SNE (scikit-learn) and UMAP
(umap-learn) when the ``embeddings`` extra is installed. A second model's projection can be turned
onto the first's (orthogonal Procrustes) so that side-by-side plots share their orientation."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np

PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
_PACKAGES = {"tsne": "sklearn", "umap": "umap"}


@dataclass(frozen=True, eq=False)
class Projection:
    """Each image's 2-D coordinates (n×2) by ``method``; for PCA the share of variance per axis."""

    method: str
    coordinates: np.ndarray
    explained: tuple[float, float] | None = None
    note: str = ""


def available_projections() -> tuple[str, ...]:
    """The projection methods usable here: PCA, then t-SNE / UMAP where their package is installed."""
    return ("pca",) + tuple(m for m, package in _PACKAGES.items() if importlib.util.find_spec(package) is not None)


def _features(features) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be an n×d array, got shape {x.shape}")
    if x.shape[0] < 3:
        raise ValueError(f"a projection needs at least 3 images, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features hold non-finite values")
    return x


def _threads() -> int:
    """Native threads for t-SNE: all cores but one (the window's), at least one. On a busy machine,
    OpenMP threads on every core took 27 s of CPU for 45 points that one thread does in 0.4 s."""
    return max(1, (os.cpu_count() or 1) - 1)


def pca_2d(features) -> Projection:
    """The scores on the first two principal components (centred, exact SVD); each axis's sign makes
    its largest loading positive, so the result does not depend on the SVD routine."""
    x = _features(features)
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(components.shape[0]), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    scores = centred @ (components * signs[:, None]).T
    if scores.shape[1] < 2:
        scores = np.pad(scores, ((0, 0), (0, 2 - scores.shape[1])))
    variances = np.pad(s ** 2, (0, 2))[:2]
    total = float((s ** 2).sum())
    explained = tuple(float(v / total) if total > 0 else 0.0 for v in variances)
    return Projection("pca", scores, explained)


def tsne_2d(features, seed: int = 0) -> Projection:
    """scikit-learn's t-SNE (PCA initialisation, perplexity min(30, (n − 1)/3))."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = _features(features)
    perplexity = float(min(30.0, (x.shape[0] - 1) / 3))
    with threadpool_limits(limits=_threads()):  # OpenMP threads on every core spin against each other
        coordinates = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return Projection("tsne", np.asarray(coordinates, dtype=np.float64), note=f"perplexity {perplexity:g}, seed {seed}")


def umap_2d(features, seed: int = 0) -> Projection:
    """umap-learn's UMAP (15 neighbours or n − 1, seeded)."""
    import umap

    x = _features(features)
    neighbours = int(min(15, x.shape[0] - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed, n_jobs=1)
    return Projection("umap", np.asarray(reducer.fit_transform(x), dtype=np.float64),
                      note=f"{neighbours} neighbours, seed {seed}")


def project(features, method: str = "pca", seed: int = 0) -> Projection:
    """``features`` projected to 2-D by ``method`` (one of ``available_projections()``)."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; use one of {', '.join(PROJECTIONS)}")
    if method not in available_projections():
        raise ValueError(f"{PROJECTIONS[method]} needs the optional package {_PACKAGES[method]!r} "
                         "(pip install 'kdx[embeddings]')")
    if method == "pca":
        return pca_2d(features)
    return tsne_2d(features, seed) if method == "tsne" else umap_2d(features, seed)


def aligned_to(projection: Projection, reference: Projection) -> Projection:
    """``projection`` rotated (or reflected) about its centre onto ``reference`` (orthogonal Procrustes);
    distances between its points are unchanged."""
    a, b = projection.coordinates, reference.coordinates
    if a.shape != b.shape:
        raise ValueError(f"projections of different sizes: {a.shape} vs {b.shape}")
    a_centre, b_centre = a.mean(axis=0), b.mean(axis=0)
    u, _, vt = np.linalg.svd((a - a_centre).T @ (b - b_centre))
    rotated = (a - a_centre) @ (u @ vt) + a_centre
    note = (projection.note + "; " if projection.note else "") + "turned onto the Teacher's (Procrustes)"
    return Projection(projection.method, rotated, projection.explained, note)
