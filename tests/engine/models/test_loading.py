"""Loading every PyTorch format and container, safely, with preprocessing from sidecars or presets."""
import argparse
import copy
import pathlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import make_resnet18
from kdx_engine.cams import ClassTarget, cam_method
from kdx_engine.models import (
    PENULTIMATE, ModelLoadError, Preprocessing, UntrustedPickleError, load_model, write_sidecar,
)
from kdx_engine.models.loading import FALLBACK_NOTE, check_same_classes
from kdx_engine.models.registry import get_architecture

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def resnet18():
    return make_resnet18()


def cifar(name, classes=10, seed=0):
    torch.manual_seed(seed)
    return get_architecture(name).build(classes).eval()


def _assert_same_logits(backend, module, x=X):
    with torch.no_grad():
        torch.testing.assert_close(backend.logits(x), module(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("container", ["bare", "model", "state_dict", "student", "module_prefix", "namespace"])
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".pth.tar", ".ckpt", ""])
def test_state_dict_containers_load_and_recognise_the_architecture(tmp_path, container, suffix):
    model = cifar("resnet8")
    sd = model.state_dict()
    obj = {
        "bare": sd,
        "model": {"model": sd, "epoch": 240},
        "state_dict": {"state_dict": sd, "best_acc": 71.2},
        "student": {"student": sd},
        "module_prefix": {"module." + k: v for k, v in sd.items()},
        "namespace": {"model": sd, "opt": argparse.Namespace(lr=0.05, model="resnet8")},
    }[container]
    path = tmp_path / f"ckpt{suffix}"
    torch.save(obj, path)
    backend = load_model(path)
    assert backend.info.architecture == "resnet8"
    assert backend.info.num_classes == 10
    assert backend.info.preprocessing.input_size == 32
    assert backend.info.num_parameters == sum(p.numel() for p in model.parameters())
    _assert_same_logits(backend, model, torch.randn(2, 3, 32, 32))


def test_safetensors_and_torchvision_state_dicts(tmp_path, resnet18):
    path = tmp_path / "r18.safetensors"
    save_file(resnet18.state_dict(), str(path))
    backend = load_model(path)
    assert backend.info.architecture == "resnet18" and backend.info.num_classes == 10
    assert backend.info.preprocessing.input_size == 224 and backend.info.preprocessing.resize == 256
    _assert_same_logits(backend, resnet18)


def test_mdistiller_checkpoint_offers_student_and_teacher(tmp_path):
    student, teacher = cifar("resnet8x4", seed=1), cifar("resnet32x4", seed=2)
    sd = {f"module.student.{k}": v for k, v in student.state_dict().items()}
    sd.update({f"module.teacher.{k}": v for k, v in teacher.state_dict().items()})
    path = tmp_path / "mdistiller.pth"
    torch.save({"model": sd, "epoch": 240}, path)
    loaded_student = load_model(path)
    assert loaded_student.info.architecture == "resnet8x4"
    assert any("also holds a teacher" in note for note in loaded_student.info.notes)
    loaded_teacher = load_model(path, which="teacher")
    assert loaded_teacher.info.architecture == "resnet32x4"
    x = torch.randn(2, 3, 32, 32)
    _assert_same_logits(loaded_student, student, x)
    _assert_same_logits(loaded_teacher, teacher, x)


def test_malicious_pickle_runs_nothing_unless_trusted(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(UntrustedPickleError, match="evil.pth.*run code"):
        load_model(path)
    assert not marker.exists()
    with pytest.raises(ModelLoadError):
        load_model(path, trust_pickle=True)  # runs the payload, then finds no weights
    assert marker.exists()


def test_full_pickled_module_needs_trust(tmp_path, resnet18):
    path = tmp_path / "full.pt"
    torch.save(resnet18, path)
    with pytest.raises(UntrustedPickleError):
        load_model(path)
    backend = load_model(path, trust_pickle=True)
    assert any("trusted" in note for note in backend.info.notes)
    _assert_same_logits(backend, resnet18)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_gives_the_same_logits_and_grad_cam(tmp_path, resnet18, how, quiet):
    script = torch.jit.trace(resnet18, X) if how == "trace" else torch.jit.script(resnet18)
    path = tmp_path / f"r18_{how}.pt"
    script.save(str(path))
    backend = load_model(path)
    assert backend.info.format == "torchscript"
    assert FALLBACK_NOTE.format(geometry="resize 256, centre crop 224") in backend.info.notes
    assert backend.info.preprocessing.input_size == 224
    assert {"layer1", "layer4", "fc", PENULTIMATE} <= set(backend.layer_names())
    _assert_same_logits(backend, resnet18)
    expected = cam_method("gradcam")(load_model_in_memory(resnet18), layer="layer4")(X, [ClassTarget(3)] * 2)
    got = cam_method("gradcam")(backend, layer="layer4")(X, [ClassTarget(3)] * 2)
    torch.testing.assert_close(got.maps, expected.maps, atol=1e-6, rtol=1e-5)
    forward = backend.forward(X, [PENULTIMATE])
    assert forward.activations[PENULTIMATE].shape == (2, 512)


def test_torch_export_program_loads_with_hooks_and_gradients(tmp_path, resnet18):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(copy.deepcopy(resnet18), (X,), dynamic_shapes=({0: batch},))
    path = tmp_path / "r18.pt2"
    torch.export.save(program, str(path))
    backend = load_model(path)
    assert backend.info.format == "torch_export"
    assert backend.info.preprocessing.input_size == 64
    assert "input size 64 read from the exported program" in backend.info.notes
    _assert_same_logits(backend, resnet18)
    _assert_same_logits(backend, resnet18, X[:1])
    expected = cam_method("gradcam")(load_model_in_memory(resnet18), layer="layer4")(X, [ClassTarget(3)] * 2)
    got = cam_method("gradcam")(backend, layer="layer4")(X, [ClassTarget(3)] * 2)
    torch.testing.assert_close(got.maps, expected.maps, atol=1e-6, rtol=1e-5)


def test_tuple_outputs_are_unwrapped(tmp_path, quiet):
    class FeatsAndLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cifar("resnet8")

        def forward(self, x):
            return [x.mean(dim=(2, 3))], self.net(x)  # RepDistiller's (feats, logits)

    model = FeatsAndLogits().eval()
    path = tmp_path / "tuple.pt"
    torch.jit.trace(model, torch.randn(1, 3, 32, 32), strict=False).save(str(path))
    backend = load_model(path, preprocessing=Preprocessing(input_size=32, source="test"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(backend.logits(x), model(x)[1], atol=1e-5, rtol=1e-5)


def test_sidecar_sets_preprocessing_and_class_names(tmp_path):
    model = cifar("resnet8", classes=3)
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    config = Preprocessing(input_size=48, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                           class_names=("cat", "dog", "fox"), architecture="resnet8")
    write_sidecar(path, config)
    backend = load_model(path)
    assert backend.info.preprocessing.class_names == ("cat", "dog", "fox")
    assert backend.info.preprocessing.input_size == 48 and backend.info.preprocessing.source == "sidecar"
    write_sidecar(path, Preprocessing(input_size=32, class_names=("a", "b")))
    with pytest.raises(ModelLoadError, match="names 2 classes but the model outputs 3"):
        load_model(path)
    (tmp_path / "m.pth.kdx.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="m.pth.kdx.json: unreadable"):
        load_model(path)


@pytest.mark.parametrize("content,problem", [
    (b"", "file is empty"),
    (b"hello, I am text\n", "not a readable"),
    (b"\x00\x01\x02" * 100, "not a readable"),
])
def test_bad_files_give_a_message_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=f"broken.pth: {problem}"):
        load_model(path)


@pytest.mark.parametrize("prefix", [b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04"])
def test_random_bytes_are_refused_with_a_load_error(tmp_path, prefix):
    rng = np.random.default_rng(len(prefix))
    for size in (50, 333, 2048):
        path = tmp_path / "noise.pth"
        path.write_bytes(prefix + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        with pytest.raises(ModelLoadError, match="noise.pth"):
            load_model(path)


def test_truncated_checkpoint_and_unknown_architecture(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(cifar("resnet8").state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="cut.pth"):
        load_model(path)
    odd = tmp_path / "odd.pth"
    torch.save({"w": torch.zeros(3, 3)}, odd)
    with pytest.raises(ModelLoadError, match="odd.pth: architecture not recognised"):
        load_model(odd)
    with pytest.raises(ModelLoadError, match="do not match architecture resnet20"):
        load_model(odd, arch="resnet20")
    with pytest.raises(ModelLoadError, match="unknown architecture 'resnet9000'"):
        load_model(odd, arch="resnet9000")
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "missing.pth")


def test_teacher_and_student_must_agree_on_classes(tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save(cifar("resnet8", classes=10).state_dict(), a)
    torch.save(cifar("resnet8", classes=7).state_dict(), b)
    teacher, student = load_model(a), load_model(b)
    check_same_classes(teacher, load_model(a))
    with pytest.raises(ModelLoadError, match="a.pth has 10 classes but b.pth has 7"):
        check_same_classes(teacher, student)


def load_model_in_memory(module):
    from conftest import backend_for

    return backend_for(copy.deepcopy(module), 10)
