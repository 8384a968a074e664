from collections import Counter

import numpy as np
import pytest
from PIL import Image

from kdx_engine.data import ImageError, ImageFolderDataset
from kdx_engine.models.preprocessing import Preprocessing

TINY = Preprocessing(input_size=8, resize=None)


def make_dataset_folder(root, counts: dict[str, int], root_images: int = 0):
    """``root/<class>/<class>_<i>.png`` tiny images, plus ``root_images`` images at the root."""
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (10, 12), (i * 20 % 256, 50, 100)).save(root / folder / f"{folder}_{i}.png")
    for i in range(root_images):
        Image.new("RGB", (10, 12), (0, 0, 0)).save(root / f"loose_{i}.png")
    return root


def test_labels_come_from_folder_names_matched_to_class_names(tmp_path):
    make_dataset_folder(tmp_path, {"cat": 2, "dog": 3}, root_images=1)
    dataset = ImageFolderDataset(tmp_path, class_names=["bird", "cat", "dog"])
    assert len(dataset) == 6
    by_name = {path.name: label for path, label in zip(dataset.paths, dataset.labels)}
    assert by_name["cat_0.png"] == 1 and by_name["dog_2.png"] == 2
    assert by_name["loose_0.png"] is None
    assert dataset.unknown_folders == ()


def test_folder_names_match_class_names_ignoring_case_and_underscores(tmp_path):
    make_dataset_folder(tmp_path, {"golden_retriever": 1, "Tabby-Cat": 1})
    dataset = ImageFolderDataset(tmp_path, class_names=["tabby cat", "Golden Retriever"])
    assert sorted(dataset.labels) == [0, 1] and dataset.unknown_folders == ()


def test_unknown_class_folder_is_reported_not_fatal(tmp_path):
    make_dataset_folder(tmp_path, {"cat": 1, "zebra": 2})
    dataset = ImageFolderDataset(tmp_path, class_names=["cat", "dog"])
    assert dataset.unknown_folders == ("zebra",)
    assert Counter(dataset.labels) == {0: 1, None: 2}


def test_without_class_names_the_sorted_folders_are_the_classes(tmp_path):
    make_dataset_folder(tmp_path, {"b": 1, "a": 1})
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.class_names == ("a", "b")
    assert dataset.labels == (0, 1)


def test_indexing_gives_the_image_with_its_mask_and_its_label(tmp_path):
    make_dataset_folder(tmp_path, {"cat": 1})
    mask = np.zeros((12, 10), np.uint8)
    mask[2:6, 3:7] = 255
    Image.fromarray(mask).save(tmp_path / "cat" / "cat_0.mask.png")
    dataset = ImageFolderDataset(tmp_path, class_names=["cat"])
    assert len(dataset) == 1
    image, label = dataset[0]
    assert label == 0 and image.rgb.shape == (12, 10, 3) and image.mask.sum() == 16


def test_batches_skip_bad_files_and_collect_their_errors(tmp_path):
    make_dataset_folder(tmp_path, {"cat": 3, "dog": 2})
    (tmp_path / "cat" / "cat_1.png").write_bytes(b"broken")
    dataset = ImageFolderDataset(tmp_path, class_names=["cat", "dog"])
    batches = list(dataset.batches(TINY, batch_size=2))
    assert [b.inputs.shape[0] for b in batches] == [2, 2]
    assert [b.inputs.shape[1:] for b in batches] == [(3, 8, 8)] * 2
    errors = [error for b in batches for error in b.errors]
    assert len(errors) == 1 and isinstance(errors[0], ImageError)
    assert str(errors[0]).startswith("cat_1.png: ")
    assert [label for b in batches for label in b.labels] == [0, 0, 1, 1]
    with pytest.raises(ImageError):
        dataset[dataset.paths.index(tmp_path / "cat" / "cat_1.png")]


def test_batches_over_chosen_indices(tmp_path):
    make_dataset_folder(tmp_path, {"cat": 3, "dog": 3})
    dataset = ImageFolderDataset(tmp_path, class_names=["cat", "dog"])
    (batch,) = dataset.batches(TINY, batch_size=10, indices=[5, 0])
    assert batch.indices == (5, 0) and batch.labels == (1, 0) and batch.inputs.shape == (2, 3, 8, 8)


def test_balanced_sample_is_seeded_reproducible_and_balanced(tmp_path):
    make_dataset_folder(tmp_path, {"a": 6, "b": 6, "c": 6}, root_images=3)
    dataset = ImageFolderDataset(tmp_path, class_names=["a", "b", "c"])
    sample = dataset.balanced_sample(6, seed=7)
    assert sample == dataset.balanced_sample(6, seed=7)
    assert len(set(sample)) == 6
    assert Counter(dataset.labels[i] for i in sample) == {0: 2, 1: 2, 2: 2}
    assert len({tuple(dataset.balanced_sample(6, seed=s)) for s in range(5)}) > 1


def test_balanced_sample_fills_from_larger_classes_and_stops_at_what_exists(tmp_path):
    make_dataset_folder(tmp_path, {"small": 1, "large": 9})
    dataset = ImageFolderDataset(tmp_path, class_names=["small", "large"])
    counts = Counter(dataset.labels[i] for i in dataset.balanced_sample(5, seed=0))
    assert counts == {0: 1, 1: 4}
    assert dataset.balanced_sample(100, seed=0) == list(range(10))
    counts = Counter(dataset.labels[i] for i in dataset.balanced_sample(3, seed=1))
    assert max(counts.values()) - min(counts.values()) <= 1 and sum(counts.values()) == 3


def test_balanced_sample_of_an_unlabelled_folder_samples_all_images(tmp_path):
    make_dataset_folder(tmp_path, {}, root_images=4)
    dataset = ImageFolderDataset(tmp_path, class_names=["cat"])
    assert len(dataset.balanced_sample(3, seed=0)) == 3


def test_placeholder_class_names_follow_the_sorted_folders_like_torchvision(tmp_path):
    make_dataset_folder(tmp_path, {"dog": 2, "cat": 1, "emu": 1})
    dataset = ImageFolderDataset(tmp_path, class_names=["class_0", "class_1"])
    by_name = {path.name: label for path, label in zip(dataset.paths, dataset.labels)}
    assert by_name["cat_0.png"] == 0 and by_name["dog_1.png"] == 1 and by_name["emu_0.png"] is None
    assert "cat → 0" in dataset.label_note and "1 folder(s) beyond the models' 2 classes" in dataset.label_note


def test_real_class_names_override_the_folder_order(tmp_path):
    make_dataset_folder(tmp_path, {"dog": 1, "cat": 1})
    dataset = ImageFolderDataset(tmp_path, class_names=["dog", "cat"])
    assert dict(zip((p.parent.name for p in dataset.paths), dataset.labels)) == {"dog": 0, "cat": 1}
    assert dataset.label_note is None


def test_empty_class_names_mean_the_sorted_folders(tmp_path):
    make_dataset_folder(tmp_path, {"b": 1, "a": 1})
    dataset = ImageFolderDataset(tmp_path, class_names=())
    assert dataset.class_names == ("a", "b") and dataset.labels == (0, 1)
