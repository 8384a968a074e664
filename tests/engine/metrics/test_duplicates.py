"""Duplicated images are found and left out of FSS, RS and CKA (issue 26): the same file under another
name, and a re-encoded copy with the same pixels. With the copies left out the numbers equal those of the
dataset without them; the note and the JSON name each copy and what it repeats. A re-encoded copy of a
UniCAM reference member is a member."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import backend_for, write_colour_dataset
from kdx_engine.data import ImageFolderDataset, load_image
from kdx_engine.metrics import dataset_metrics
from kdx_engine.models.registry import get_architecture
from kdx_engine.unicam import ReferenceSet


def _backend(name, seed):
    torch.manual_seed(seed)
    return backend_for(get_architecture(name).build(3).eval(), 3, 32)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    clean = write_colour_dataset(tmp_path_factory.mktemp("clean"), ("red", "green", "blue"), per_class=12, seed=1)
    copied = tmp_path_factory.mktemp("copied") / "data"
    shutil.copytree(clean, copied)
    for name in sorted(p.name for p in (copied / "red").glob("*.png"))[:3]:
        shutil.copy(copied / "red" / name, copied / "red" / f"zz_copy_of_{name}")  # the same file
    source = sorted((copied / "green").glob("*.png"))[0]
    Image.open(source).save(copied / "green" / "zz_reencoded.bmp")  # the same pixels, another file
    return clean, copied


def test_copies_are_left_out_and_the_numbers_equal_the_clean_dataset(roots):
    clean, copied = roots
    teacher, student = _backend("resnet20", 1), _backend("resnet8", 2)
    names = ("red", "green", "blue")
    expected = dataset_metrics(teacher, student, ImageFolderDataset(clean, class_names=names), seed=0)
    result = dataset_metrics(teacher, student, ImageFolderDataset(copied, class_names=names), seed=0)
    assert result.n == expected.n == 36
    assert len(result.duplicates) == 4
    assert sum("(same file)" in d for d in result.duplicates) == 3
    assert [d for d in result.duplicates if "(same pixels)" in d][0].startswith("green/zz_reencoded.bmp = green/")
    assert result.notes[0].startswith("4 duplicate image(s) left out")
    for got, want in zip(result.fss, expected.fss):
        assert got.result.value == pytest.approx(want.result.value, abs=1e-12)
        assert (got.result.low, got.result.high) == pytest.approx((want.result.low, want.result.high), abs=1e-12)
    assert result.to_json()["duplicates"] == result.duplicates


def test_a_reencoded_copy_of_a_reference_member_is_a_member(roots, tmp_path):
    clean, _ = roots
    reference = ReferenceSet.from_folder(clean, n=8, seed=0, class_names=("red", "green", "blue"))
    member = reference.images[0]
    Image.fromarray(member.rgb).save(tmp_path / "renamed.bmp")
    copy = load_image(tmp_path / "renamed.bmp")
    assert copy.sha256 != member.sha256 and copy.pixel_sha256 == member.pixel_sha256
    assert reference.contains(copy)
    swapped, swaps = reference.replacing(copy)
    assert len(swaps) == 1 and not swapped.contains(copy)
    other = load_image(sorted((clean / "blue").glob("*.png"))[-1])
    assert reference.contains(other) == any(np.array_equal(other.rgb, m.rgb) for m in reference.images)
