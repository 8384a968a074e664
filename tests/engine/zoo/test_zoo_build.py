"""``kdx zoo build``: the demo data regenerated from its seed, and the quick build end to end."""
import json
from pathlib import Path

import numpy as np
import pytest

import kdx_engine
from kdx_engine.cli import main
from kdx_engine.models import load_model
from kdx_engine.zoo import (
    DEMO_DATA,
    balanced_prefix,
    demo_split,
    fixed_test_slice,
    read_zoo,
    write_demo_dataset,
)


def test_fixed_test_slice_is_a_prefix_of_the_demo_test_split():
    first = fixed_test_slice(DEMO_DATA, 8)
    longer = demo_split("test", 12)
    assert np.array_equal(first.images, longer.images[:8])
    aligned = demo_split("test_cue_aligned", 8)
    assert np.array_equal(aligned.cue_labels, aligned.labels)
    with pytest.raises(ValueError, match="unknown demo split"):
        demo_split("holdout", 4)


def test_balanced_prefix_takes_the_first_images_of_each_class():
    split = demo_split("test", 40)
    chosen = balanced_prefix(split, 2)
    assert sorted(chosen.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_demo_dataset_is_written_as_an_image_folder(tmp_path):
    root = write_demo_dataset(tmp_path / "data", n=8, split="train_labelled")
    manifest = json.loads((root / "split.json").read_text())
    assert manifest["n"] == 8 and manifest["cue_agreement"] == 0.95
    assert len(list(root.rglob("*.mask.png"))) == 8


def test_zoo_build_refuses_to_replace_a_folder_without_overwrite(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.pth").write_bytes(b"x")
    code = main(["zoo", "build", "--quick", "--out", str(tmp_path / "models"),
                 "--samples", str(tmp_path / "samples")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "models" / "mine.pth").is_file()


def _package_files() -> set:
    package = Path(kdx_engine.__file__).parent
    return {p for p in package.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_quick_build_writes_a_loadable_zoo(tmp_path):
    package_before = _package_files()
    assert main(["zoo", "build", "--quick", "--out", str(tmp_path / "models"),
                 "--samples", str(tmp_path / "samples")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "samples"]  # no staging left behind
    assert _package_files() == package_before  # nothing written into the package
    manifest = read_zoo(tmp_path / "models")
    for model in manifest.models.values():
        for file in model.files.values():
            assert load_model(tmp_path / "models" / file).info.num_classes == 4
    assert len(list((tmp_path / "samples").rglob("*.mask.png"))) == 4
