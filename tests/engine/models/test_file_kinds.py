"""What a dropped file is (issue 13): the format names a user reads, an image dropped on a model slot,
and the models a two-model (mdistiller) checkpoint offers."""
import copy
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import make_cifar, make_resnet18
from kdx_engine.models import ModelLoadError, load_model, models_in_file
from kdx_engine.models.loading import PICKLED_MODULE, STATE_DICT


class Progress:
    def update(self, *_):
        pass


def test_a_state_dict_is_labelled_state_dict_and_a_trusted_module_pickled_module(tmp_path):
    model = make_cifar("resnet8", 10)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    torch.save(make_resnet18(), tmp_path / "full.pth")  # a full module: ImageNet fallback preset, 224 px
    assert load_model(tmp_path / "weights.pth").info.format == STATE_DICT == "state_dict"
    assert load_model(tmp_path / "full.pth", trust_pickle=True).info.format == PICKLED_MODULE == "pickled module"
    save_file(model.state_dict(), str(tmp_path / "weights.safetensors"))
    assert load_model(tmp_path / "weights.safetensors").info.format == "safetensors"


@pytest.mark.parametrize("name,kind", [("photo.png", "PNG"), ("photo.jpg", "JPEG"), ("photo.pth", "PNG"),
                                       ("photo.pt2", "PNG"), ("photo.onnx", "PNG"), ("photo.safetensors", "PNG"),
                                       ("photo", "WEBP")])
def test_an_image_dropped_on_a_model_slot_is_called_an_image(tmp_path, name, kind):
    from kdx_gui.state.analysis import load_slot_model

    path = tmp_path / name
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(path, format=kind)
    label = {"WEBP": "a WebP", "JPEG": "a JPEG", "PNG": "a PNG"}[kind]
    with pytest.raises(ModelLoadError) as caught:
        load_slot_model(str(path), False, Progress())
    assert str(caught.value) == f"{name}: is {label} image, not a model file (drop images on the gallery)"


@pytest.fixture(scope="module")
def pair():
    return make_cifar("resnet8x4", 10, seed=1), make_cifar("resnet32x4", 10, seed=2)


def _mdistiller(student, teacher, prefix="module."):
    sd = {f"{prefix}student.{k}": v for k, v in student.state_dict().items()}
    sd.update({f"{prefix}teacher.{k}": v for k, v in teacher.state_dict().items()})
    return sd


@pytest.mark.parametrize("container", ["model", "bare", "unprefixed", "two_keys"])
def test_a_two_model_checkpoint_lists_both_and_each_loads(tmp_path, pair, container):
    student, teacher = pair
    obj = {"model": {"model": _mdistiller(student, teacher), "epoch": 240},
           "bare": _mdistiller(student, teacher),
           "unprefixed": _mdistiller(student, teacher, prefix=""),
           "two_keys": {"student": student.state_dict(), "teacher": teacher.state_dict(), "epoch": 3}}[container]
    path = tmp_path / "kd.pth"
    torch.save(obj, path)
    assert models_in_file(path) == ["student", "teacher"]
    x = torch.randn(2, 3, 32, 32)
    for which, module in zip(models_in_file(path), pair):
        backend = load_model(path, which=which)
        assert backend.info.architecture == {"student": "resnet8x4", "teacher": "resnet32x4"}[which]
        with torch.no_grad():
            torch.testing.assert_close(backend.logits(x), module(x), atol=1e-5, rtol=1e-5)


def test_a_two_model_safetensors_file_lists_both(tmp_path, pair):
    path = tmp_path / "kd.safetensors"
    save_file({k: v.contiguous() for k, v in _mdistiller(*pair).items()}, str(path))
    assert models_in_file(path) == ["student", "teacher"]


def test_a_file_with_one_model_or_none_lists_nothing(tmp_path, pair):
    student, _ = pair
    torch.save(student.state_dict(), tmp_path / "one.pth")
    torch.save({"student": student.state_dict()}, tmp_path / "student_only.pth")
    torch.save({f"module.student.{k}": v for k, v in student.state_dict().items()}, tmp_path / "prefixed.pth")
    resnet = make_resnet18()
    x = torch.randn(1, 3, 64, 64)
    torch.jit.trace(copy.deepcopy(resnet), x).save(str(tmp_path / "r18.ts"))
    torch.export.save(torch.export.export(copy.deepcopy(resnet), (x,)), str(tmp_path / "r18.pt2"))
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_bytes(b"hello, I am text\n")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "photo.png")
    for name in ("one.pth", "student_only.pth", "prefixed.pth", "r18.ts", "r18.pt2", "empty.pth", "text.pth",
                 "photo.png", "missing.pth"):
        assert models_in_file(tmp_path / name) == [], name


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/kdx_models_in_file_ran", "w"))


def test_listing_the_models_of_an_untrusted_pickle_runs_nothing(tmp_path):
    import pathlib

    marker = pathlib.Path("/tmp/kdx_models_in_file_ran")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"model": _Payload()}, handle)
    torch.save({"student": _Payload(), "teacher": _Payload()}, tmp_path / "evil2.pth")
    marker.unlink(missing_ok=True)
    assert models_in_file(path) == [] and models_in_file(tmp_path / "evil2.pth") == []
    assert not marker.exists()
