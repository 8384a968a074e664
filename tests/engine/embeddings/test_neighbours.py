"""k-NN accuracy and T–S neighbourhood overlap: 1 for a model with itself, ≈ k/(n − 1) with a shuffled copy."""
import numpy as np
import pytest

from kdx_engine.embeddings import knn_accuracy, nearest_neighbours, neighbourhood_overlap, overlap_per_image


def test_nearest_neighbours_on_a_line():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert nearest_neighbours(x, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    with pytest.raises(ValueError, match="at least k \\+ 1"):
        nearest_neighbours(x, 4)


def test_overlap_of_a_model_with_itself_is_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 16))
    labels = rng.integers(0, 4, size=80)
    result = neighbourhood_overlap(x, x, labels, k=5)
    assert result.overall.value == 1.0
    assert all(v.value == 1.0 for v in result.per_class.values())


def test_overlap_with_a_shuffled_copy_is_near_chance():
    rng = np.random.default_rng(1)
    n, k = 400, 10
    x = rng.normal(size=(n, 8))
    shuffled = x[rng.permutation(n)]  # the same features given to other images
    result = neighbourhood_overlap(x, shuffled, [0] * n, k=k)
    assert result.chance == pytest.approx(k / (n - 1))
    assert result.overall.low <= k / (n - 1) <= result.overall.high
    assert result.overall.value < 3 * k / (n - 1)


def test_overlap_is_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert np.all(overlap_per_image(x, 3.0 * x @ q, k=4) == 1.0)


def test_knn_accuracy_separated_and_random_classes():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 30)
    separated = np.eye(3)[labels] * 10 + rng.normal(size=(90, 3))
    result = knn_accuracy(separated, labels, k=5)
    assert result.overall.value == 1.0 and set(result.per_class) == {0, 1, 2}
    assert result.counts == {0: 30, 1: 30, 2: 30}
    noise = knn_accuracy(rng.normal(size=(300, 5)), rng.integers(0, 3, size=300), k=5)
    assert noise.overall.low < 1 / 3 + 0.1 and noise.overall.value < 0.5


def test_knn_accuracy_leaves_unlabelled_images_out():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2], [2.5]])
    result = knn_accuracy(x, [0, 0, 0, 1, 1, 1, None], k=2)
    assert result.overall.value == 1.0 and sum(result.counts.values()) == 6


def test_summary_without_enough_labels_keeps_the_overlap_and_says_why():
    from kdx_engine.embeddings import ModelOutputs, embedding_metrics

    rng = np.random.default_rng(5)
    features = {"teacher": rng.normal(size=(20, 4)), "student": rng.normal(size=(20, 4))}
    logits = {role: rng.normal(size=(20, 3)) for role in features}
    outputs = ModelOutputs(tuple(f"{i}.png" for i in range(20)), (0, 1, 2) + (None,) * 17, features, logits)
    metrics = embedding_metrics(outputs, k=5)
    assert metrics.knn == {} and "3 labelled" in metrics.notes[0]
    assert metrics.overlap["teacher-student"].overall.is_defined and metrics.n_labelled == 3
