"""The demo's synthetic shapes: determinism, exact masks, cue statistics, folders, learnability."""
import json

import numpy as np
import pytest
from PIL import Image

from kdx_engine.data.synthetic import (
    DEMO_CUE_AGREEMENT,
    SyntheticConfig,
    cue_aligned_split,
    cue_shuffled_split,
    demo_splits,
    generate_split,
    stable_split_hash,
    write_image_folder,
)

CONFIG = SyntheticConfig()
K = CONFIG.num_classes


@pytest.fixture(scope="module")
def labelled():
    return generate_split(CONFIG, "train_labelled", 2000, 0.95)


@pytest.fixture(scope="module")
def independent():
    return generate_split(CONFIG, "teacher_train", 2000, None)


def _background_means(split) -> np.ndarray:
    """Mean RGB of the non-object pixels of each image, N×3."""
    outside = ~split.masks[..., None]
    return (split.images * outside).sum(axis=(1, 2)) / outside.sum(axis=(1, 2))


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fit class centroids on the first half (standardised features), score on the second."""
    half = len(labels) // 2
    mean, std = features[:half].mean(0), features[:half].std(0) + 1e-9
    z = (features - mean) / std
    centroids = np.stack([z[:half][labels[:half] == c].mean(0) for c in range(k)])
    predicted = np.argmin(((z[half:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(predicted == labels[half:]))


def _shape_moments(masks: np.ndarray) -> np.ndarray:
    """Rotation- and scale-invariant shape features of each mask (Hu moments 1-4, fill ratio)."""
    features = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        area = float(len(xs))
        dx, dy = xs - xs.mean(), ys - ys.mean()

        def eta(p, q):
            return float((dx ** p * dy ** q).sum()) / area ** (1 + (p + q) / 2)

        n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
        n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
        features.append([
            n20 + n02,
            (n20 - n02) ** 2 + 4 * n11 ** 2,
            (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2,
            (n30 + n12) ** 2 + (n21 + n03) ** 2,
            area / (np.pi * float((dx ** 2 + dy ** 2).max() + 1.0)),
        ])
    return np.array(features)


def test_same_config_and_split_give_identical_arrays():
    a = generate_split(CONFIG, "test", 40, 0.5)
    b = generate_split(CONFIG, "test", 40, 0.5)
    for field in ("images", "masks", "labels", "cue_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_other_seed_or_split_name_gives_other_images():
    base = generate_split(CONFIG, "test", 40, None)
    other_seed = generate_split(SyntheticConfig(seed=1), "test", 40, None)
    other_name = generate_split(CONFIG, "transfer", 40, None)
    assert not np.array_equal(base.images, other_seed.images)
    assert not np.array_equal(base.images, other_name.images)


def test_split_hash_is_stable_across_processes():
    assert stable_split_hash("test") == 7313085519096743583


def test_smaller_split_is_a_prefix_of_a_larger_one():
    small, large = generate_split(CONFIG, "test", 10, 0.9), generate_split(CONFIG, "test", 30, 0.9)
    np.testing.assert_array_equal(small.images, large.images[:10])
    np.testing.assert_array_equal(small.cue_labels, large.cue_labels[:10])


def test_images_and_masks_have_the_documented_layout():
    split = generate_split(SyntheticConfig(size=48), "test", 6, None)
    assert split.images.shape == (6, 48, 48, 3) and split.images.dtype == np.uint8
    assert split.masks.shape == (6, 48, 48) and split.masks.dtype == bool
    assert split.labels.shape == split.cue_labels.shape == (6,)


def test_mask_is_exactly_the_pixels_painted_in_the_object_colour(labelled):
    for image, mask in zip(labelled.images[:300], labelled.masks[:300]):
        colours = np.unique(image[mask], axis=0)
        assert len(colours) == 1
        # Object colours keep their channel mean out of the background's band, so no background
        # pixel can carry the object colour.
        gap = np.abs(image[~mask].astype(int).sum(1) - int(colours[0].astype(int).sum()))
        assert gap.min() >= 3 * 20


def test_objects_lie_inside_the_image(labelled):
    m = labelled.masks
    assert m.any(axis=(1, 2)).all()
    assert not (m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())
    assert 0.04 < m.mean() < 0.15


def test_classes_are_balanced(labelled):
    assert np.bincount(labelled.labels, minlength=K).tolist() == [2000 // K] * K
    counts = np.bincount(generate_split(CONFIG, "test", 10, None).labels, minlength=K)
    assert counts.max() - counts.min() <= 1


def test_cue_agrees_with_the_requested_probability(labelled):
    assert abs(labelled.measured_cue_agreement() - 0.95) <= 0.03
    disagreeing = labelled.cue_labels[labelled.cue_labels != labelled.labels]
    assert set(disagreeing.tolist()) <= set(range(K))


def test_independent_cue_agrees_only_by_chance(independent):
    assert abs(independent.measured_cue_agreement() - 1 / K) <= 0.03
    assert np.bincount(independent.cue_labels, minlength=K).min() > 2000 / K * 0.8


def test_cue_is_easy_to_read_from_the_background(independent):
    accuracy = _nearest_centroid_accuracy(_background_means(independent), independent.cue_labels, K)
    assert accuracy > 0.97


def test_teacher_split_background_does_not_predict_the_class(independent):
    accuracy = _nearest_centroid_accuracy(_background_means(independent), independent.labels, K)
    assert abs(accuracy - 1 / K) < 0.06


def test_cue_free_split_has_grey_backgrounds_and_no_cue_label():
    split = generate_split(CONFIG, "teacher_train", 20, 0.95, cue=False)
    assert (split.cue_labels == -1).all() and split.cue_agreement is None
    background = split.images[~split.masks]
    assert (background[:, 0] == background[:, 1]).all() and (background[:, 1] == background[:, 2]).all()


def test_shape_is_learnable_from_mask_moments():
    split = generate_split(CONFIG, "transfer", 400, None)
    assert _nearest_centroid_accuracy(_shape_moments(split.masks), split.labels, K) > 0.8


def test_cue_shuffled_split_keeps_the_objects_and_permutes_the_cues():
    test = generate_split(CONFIG, "test", 200, None)
    shuffled = cue_shuffled_split(test)
    assert shuffled.name == "test_cue_shuffled" and shuffled.source == "test"
    np.testing.assert_array_equal(shuffled.masks, test.masks)
    np.testing.assert_array_equal(shuffled.labels, test.labels)
    np.testing.assert_array_equal(shuffled.images[shuffled.masks], test.images[test.masks])
    assert sorted(shuffled.cue_labels.tolist()) == sorted(test.cue_labels.tolist())
    changed = shuffled.cue_labels != test.cue_labels
    assert changed.mean() > 0.5
    assert not np.array_equal(shuffled.images[changed], test.images[changed])
    np.testing.assert_array_equal(shuffled.images[~changed], test.images[~changed])


def test_cue_aligned_split_points_every_cue_at_the_class():
    aligned = cue_aligned_split(generate_split(CONFIG, "test", 20, None))
    np.testing.assert_array_equal(aligned.cue_labels, aligned.labels)
    assert aligned.measured_cue_agreement() == 1.0


def test_demo_splits_have_the_documented_cue_settings():
    splits = demo_splits(CONFIG, sizes={"train_labelled": 40, "transfer": 8, "teacher_train": 8,
                                        "test": 12})
    assert set(splits) == {"train_labelled", "transfer", "teacher_train", "test",
                           "test_cue_shuffled", "test_cue_aligned"}
    assert splits["train_labelled"].cue_agreement == DEMO_CUE_AGREEMENT
    assert all(splits[n].cue_agreement is None for n in ("transfer", "teacher_train", "test"))
    assert splits["test_cue_shuffled"].n == splits["test_cue_aligned"].n == 12
    with pytest.raises(ValueError):
        demo_splits(CONFIG, sizes={"validation": 10})


def test_image_folder_round_trips(tmp_path):
    split = generate_split(CONFIG, "test", 12, 0.5)
    names = ["Circle", "Square", "Triangle", "Cross"]
    root = write_image_folder(split, names, tmp_path / "set")
    for index in range(split.n):
        folder = root / names[split.labels[index]]
        with Image.open(folder / f"{index:05d}.png") as image:
            np.testing.assert_array_equal(np.asarray(image), split.images[index])
        with Image.open(folder / f"{index:05d}.mask.png") as mask:
            assert mask.mode == "L"
            np.testing.assert_array_equal(np.asarray(mask), split.masks[index] * np.uint8(255))
    manifest = json.loads((root / "split.json").read_text())
    assert manifest["split"] == "test" and manifest["n"] == 12 and manifest["cue_agreement"] == 0.5
    assert manifest["cue_labels"] == split.cue_labels.tolist()
    assert SyntheticConfig.from_json(manifest["config"]) == CONFIG
    assert not [p for p in root.rglob(".*")]  # no temporary files left behind
    assert len(list(root.rglob("*.png"))) == 2 * split.n
    with pytest.raises(FileExistsError):
        write_image_folder(split, names, root)


def test_config_rejects_unknown_shapes_and_bad_ranges():
    with pytest.raises(ValueError):
        SyntheticConfig(classes=("circle", "hexagon"))
    with pytest.raises(ValueError):
        SyntheticConfig(scale_range=(0.3, 0.2))
    with pytest.raises(ValueError):
        generate_split(CONFIG, "test", 5, 1.5)


def test_six_classes_include_star_and_ring():
    config = SyntheticConfig(classes=("circle", "square", "triangle", "cross", "star", "ring"))
    split = generate_split(config, "transfer", 120, None)
    assert np.bincount(split.labels).tolist() == [20] * 6
    ring = split.masks[split.labels == 5]
    star = split.masks[split.labels == 4]
    assert 0.04 < ring.mean() < 0.15 and 0.04 < star.mean() < 0.15
