"""UniCAM and FSS/RS on an ONNX export equal those of the PyTorch original (issue 4)."""
import copy

import pytest
import torch

from conftest import make_cifar, write_colour_dataset
from kdx_engine.data import ImageFolderDataset, load_image
from kdx_engine.metrics import dataset_metrics
from kdx_engine.models import Preprocessing, load_model, write_sidecar
from kdx_engine.unicam import ReferenceSet, UniCam
from onnx_exports import export_onnx

PRE = Preprocessing(input_size=32, class_names=("r", "g", "b"), architecture="resnet8", source="test")


def _model(seed):
    return make_cifar("resnet8", 3, seed)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_pair")
    paths = {}
    for role, seed in (("student", 1), ("base", 2)):
        model = _model(seed)
        paths[role] = folder / f"{role}.pth"
        torch.save(model.state_dict(), paths[role])
        paths[f"{role}_onnx"] = export_onnx(copy.deepcopy(model), folder / f"{role}.onnx", 32, "legacy")
        for key in (role, f"{role}_onnx"):
            write_sidecar(paths[key], PRE)
    return paths, write_colour_dataset(folder / "data")


@pytest.mark.numerics
def test_unicam_with_an_onnx_student_matches_pytorch(files):
    paths, data = files
    reference = ReferenceSet.from_folder(data, n=8, seed=0)
    query = load_image(next((data / "g").glob("*.png")))
    base = load_model(paths["base"])
    original = UniCam(load_model(paths["student"]), base, reference, layer="layer3").explain(query, label=1)
    exported = UniCam(load_model(paths["student_onnx"]), base, reference, layer="layer3").explain(query, label=1)
    assert original.maps.max() > 0
    torch.testing.assert_close(exported.normalised(), original.normalised(), atol=1e-4, rtol=0)


@pytest.mark.numerics
def test_fss_and_rs_with_onnx_models_match_pytorch(files):
    paths, data = files
    dataset = ImageFolderDataset(data, class_names=PRE.class_names)
    stages = {"teacher": ["layer1", "layer2", "layer3"], "student": ["layer1", "layer2", "layer3"]}
    original = dataset_metrics(load_model(paths["base"]), load_model(paths["student"]), dataset,
                               stages=stages)
    exported = dataset_metrics(load_model(paths["base_onnx"]), load_model(paths["student_onnx"]), dataset,
                               stages=stages)
    for ours, theirs in zip(original.fss + [r for r in original.rs], exported.fss + [r for r in exported.rs]):
        assert abs(ours.result.value - theirs.result.value) < 1e-4
    for ours, theirs in zip(original.partial_rs, exported.partial_rs):
        assert abs(ours.result.value - theirs.result.value) < 1e-4
