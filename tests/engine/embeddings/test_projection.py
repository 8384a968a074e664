"""2-D projections: PCA recovers a known 2-D structure exactly; t-SNE keeps well-separated clusters."""
import numpy as np
import pytest

from kdx_engine.embeddings import aligned_to, available_projections, pca_2d, project


def _embedded(seed=0, n=60, d=30):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, 2))
    q, _ = np.linalg.qr(raw - raw.mean(axis=0))  # centred, uncorrelated columns: the principal axes
    plane = q * np.array([5.0, 1.0]) * np.sqrt(n)
    basis, _ = np.linalg.qr(rng.normal(size=(d, 2)))  # an orthonormal 2-D subspace of R^d
    return plane, plane @ basis.T + rng.normal(size=d) * 10  # plus an offset


def test_pca_recovers_a_planar_structure_exactly():
    plane, features = _embedded()
    projection = pca_2d(features)
    coords = projection.coordinates
    signs = np.sign(np.sum(coords * plane, axis=0))  # each axis up to its sign
    assert np.allclose(coords * signs, plane, atol=1e-9)
    assert sum(projection.explained) == pytest.approx(1.0)
    assert projection.explained[0] > projection.explained[1]


def test_pca_is_deterministic_under_row_permutation():
    _, features = _embedded(1)
    order = np.random.default_rng(2).permutation(len(features))
    assert np.allclose(pca_2d(features[order]).coordinates, pca_2d(features).coordinates[order], atol=1e-9)


def test_procrustes_turns_a_rotated_copy_back():
    plane, _ = _embedded(3)
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    reference = pca_2d(np.column_stack([plane, np.zeros(len(plane))]))
    turned = type(reference)("pca", reference.coordinates @ rotation.T)
    assert np.allclose(aligned_to(turned, reference).coordinates, reference.coordinates, atol=1e-9)


def test_unknown_projection_is_refused():
    with pytest.raises(ValueError, match="unknown projection"):
        project(np.zeros((5, 3)), "mds")


@pytest.mark.skipif("tsne" not in available_projections(), reason="scikit-learn not installed")
def test_tsne_keeps_separated_clusters_apart():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20, size=(3, 10))
    labels = np.repeat(np.arange(3), 15)
    features = centres[labels] + rng.normal(size=(45, 10))
    coords = project(features, "tsne", seed=0).coordinates
    means = np.array([coords[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(coords[labels == c] - means[c], axis=1).max() for c in range(3))
    gaps = [np.linalg.norm(means[a] - means[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > spread


@pytest.mark.slow  # umap-learn compiles with numba on its first call: about 2 min on 2 busy cores
@pytest.mark.skipif("umap" not in available_projections(), reason="umap-learn not installed")
def test_umap_keeps_separated_clusters_apart():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=20, size=(3, 10))
    labels = np.repeat(np.arange(3), 20)
    coords = project(centres[labels] + rng.normal(size=(60, 10)), "umap", seed=0).coordinates
    means = np.array([coords[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(coords[labels == c] - means[c], axis=1).max() for c in range(3))
    assert min(np.linalg.norm(means[a] - means[b]) for a in range(3) for b in range(a + 1, 3)) > spread
