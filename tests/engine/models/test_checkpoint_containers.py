"""Containers and file forms as people have them: Lightning .ckpt, timm training checkpoints with EMA
weights, RepDistiller's <arch>_vanilla folders, older plain pickles of tensors (and their malicious twins,
which run nothing), tuple and dict outputs, Hugging Face folders, one-channel inputs."""
from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from kdx_engine.checkpoints import EMA, ArchitectureError, UntrustedPickleError, read_checkpoint
from kdx_engine.data.images import normalised
from kdx_engine.models import Preprocessing, load_model
from kdx_engine.models.architectures.cifar_resnet_option_a import OptionAResNet
from kdx_engine.models.input_channels import input_channels
from kdx_engine.models.outputs import chosen_output, logits_of


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return OptionAResNet(20, 10).eval()


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _logits(model):
    with torch.no_grad():
        return model(X)


@pytest.mark.parametrize("attribute", ["model", "net"])
def test_lightning_checkpoint_loads_without_the_modules_prefix(tmp_path, attribute):
    model = _model()
    torch.save({"epoch": 9, "global_step": 900, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"{attribute}.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"arch": "resnet20_option_a", "lr": 0.1}, "optimizer_states": [{}],
                "lr_schedulers": [], "callbacks": {}, "loops": {}}, tmp_path / "epoch=9-step=900.ckpt")
    backend = load_model(tmp_path / "epoch=9-step=900.ckpt")
    assert backend.info.architecture == "resnet20_option_a"
    torch.testing.assert_close(backend.logits(X), _logits(model))
    notes = " ".join(backend.info.notes)
    assert "PyTorch Lightning checkpoint (Lightning 2.4.0)" in notes
    assert "'arch' in its hyper_parameters names 'resnet20_option_a'" in notes


def test_timm_training_checkpoint_loads_state_dict_and_offers_the_ema_weights(tmp_path):
    training, ema = _model(0), _model(1)
    torch.save({"epoch": 299, "arch": "resnet20_option_a", "state_dict": training.state_dict(),
                "state_dict_ema": ema.state_dict(), "optimizer": {}, "version": 2, "metric": 91.2},
               tmp_path / "model_best.pth.tar")
    backend = load_model(tmp_path / "model_best.pth.tar")
    torch.testing.assert_close(backend.logits(X), _logits(training))
    assert any("also holds EMA weights (state_dict_ema)" in n and "which='ema'" in n for n in backend.info.notes)
    averaged = load_model(tmp_path / "model_best.pth.tar", which=EMA)
    torch.testing.assert_close(averaged.logits(X), _logits(ema))
    assert "EMA weights loaded (state_dict_ema)" in averaged.info.notes


def test_ema_asked_of_a_checkpoint_without_it_is_refused(tmp_path):
    torch.save({"state_dict": _model().state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(Exception, match="holds no EMA weights"):
        load_model(tmp_path / "plain.pth", which=EMA)


def test_repdistiller_vanilla_folder_names_the_architecture(tmp_path):
    folder = tmp_path / "resnet20_option_a_vanilla"
    folder.mkdir()
    torch.save({"epoch": 240, "model": _model().state_dict(), "accuracy": 91.0}, folder / "ckpt_epoch_240.pth")
    backend = load_model(folder / "ckpt_epoch_240.pth")
    assert "RepDistiller teacher folder resnet20_option_a_vanilla names 'resnet20_option_a'" in backend.info.notes


def test_a_hint_leads_the_closest_families_when_nothing_fits(tmp_path):
    folder = tmp_path / "resnet32x4_vanilla"
    folder.mkdir()
    state = _model().state_dict()
    del state["linear.bias"]
    torch.save({"model": state}, folder / "ckpt_epoch_240.pth")
    with pytest.raises(ArchitectureError) as caught:
        load_model(folder / "ckpt_epoch_240.pth")
    message = str(caught.value)
    assert "the file names 'resnet32x4' (RepDistiller teacher folder resnet32x4_vanilla)" in message
    assert "Closest registered: resnet32x4: " in message


# --- older pickles of tensors -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_pickle_of_a_state_dict_is_rebuilt_without_running_anything(tmp_path, protocol):
    model = _model()
    with open(tmp_path / "resnet20.pkl", "wb") as handle:  # tensors via _load_from_bytes and _rebuild_tensor_v2
        pickle.dump(OrderedDict(model.state_dict()), handle, protocol=protocol)
    backend = load_model(tmp_path / "resnet20.pkl")
    torch.testing.assert_close(backend.logits(X), _logits(model))
    assert any("restricted unpickler" in n for n in backend.info.notes)


class _Payload:
    """Unpickling it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _PayloadInBytes:
    """A storage-like entry whose bytes are a torch.save holding the payload: rebuilt through
    torch.storage._load_from_bytes, the payload would run inside it."""

    def __init__(self, payload_bytes):
        self.payload_bytes = payload_bytes

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.payload_bytes,)


def _twins(tmp_path, marker):
    state = {"w": torch.zeros(2), "x": _Payload(marker)}
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump(state, handle, protocol=2)
    torch.save(state, tmp_path / "zip.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    inner = tmp_path / "inner.bin"
    torch.save(_Payload(marker), inner, _use_new_zipfile_serialization=False)
    with open(tmp_path / "in_bytes.pkl", "wb") as handle:
        pickle.dump({"w": torch.zeros(2), "s": _PayloadInBytes(inner.read_bytes())}, handle, protocol=4)
    return ["plain.pkl", "zip.pth", "legacy.pth", "in_bytes.pkl"]


def test_malicious_twin_of_each_form_runs_nothing_and_names_the_global(tmp_path):
    marker = tmp_path / "marker"
    for name in _twins(tmp_path, marker):
        with pytest.raises(UntrustedPickleError) as caught:
            read_checkpoint(tmp_path / name)
        assert "(it names posix.system)" in str(caught.value) or "(it names nt.system)" in str(caught.value), name
        with pytest.raises(UntrustedPickleError):
            load_model(tmp_path / name)
    assert not marker.exists()


# --- outputs -------------------------------------------------------------------------------------


class _LogSoftmaxAndLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        logits = self.fc(x)
        return torch.log_softmax(logits, 1), logits


def test_tuple_of_log_softmax_and_logits_gives_the_logits_and_says_which():
    model = _LogSoftmaxAndLogits()
    x = torch.randn(5, 4)
    output = model(x)
    chosen, said = chosen_output(output)
    assert chosen is output[1]
    assert said == "element 1 of the model's 2-tuple (element 0 is log-probabilities)"
    scripted = torch.jit.script(model)
    torch.testing.assert_close(logits_of(scripted(x)), output[1])


class _ModelOutput(OrderedDict):
    """What a Hugging Face ``ModelOutput`` is to KDX: an ordered mapping with a ``logits`` entry."""


def test_dict_and_model_output_give_their_logits_entry():
    logits = torch.randn(2, 5)
    value, said = chosen_output(_ModelOutput(loss=torch.tensor(0.3), logits=logits, hidden_states=None))
    assert value is logits and said == "output 'logits' of the model's _ModelOutput"
    value, said = chosen_output({"probs": torch.softmax(logits, 1), "scores": logits})
    assert value is logits and "output 'scores'" in said and "'probs' is probabilities" in said


# --- Hugging Face folders ------------------------------------------------------------------------


def test_hugging_face_folder_is_named_with_the_package_it_needs(tmp_path):
    folder = tmp_path / "vit-cifar10"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"],
                                                    "model_type": "vit", "id2label": {"0": "cat", "1": "dog"}}))
    from safetensors.torch import save_file

    save_file({"vit.embeddings.cls_token": torch.zeros(1, 1, 8)}, folder / "model.safetensors")
    for path in (folder, folder / "model.safetensors"):
        with pytest.raises(Exception) as caught:
            load_model(path)
        message = str(caught.value)
        assert "a Hugging Face ViTForImageClassification model (2 classes in id2label)" in message
        assert "pip install kdx[hf]" in message or "does not build transformers models" in message


# --- one-channel inputs --------------------------------------------------------------------------


def test_one_channel_preprocessing_is_validated_and_written_with_one_statistic():
    grey = Preprocessing.from_json({"input_size": 28, "mean": [0.1307], "std": [0.3081], "channels": 1})
    assert grey.channels == 1 and grey.mean[0] == pytest.approx(0.1307)
    assert grey.to_json()["mean"] == [pytest.approx(0.1307)] and grey.to_json()["channels"] == 1
    assert "channels" not in Preprocessing().to_json()
    with pytest.raises(ValueError, match="'channels' must be 1 .grey. or 3"):
        Preprocessing(channels=2)


def test_one_channel_input_is_the_grey_image_normalised():
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1).float()
    config = Preprocessing(input_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channels=1)
    got = normalised(pixels, config)
    grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    assert got.shape == (1, 8, 8)
    np.testing.assert_allclose(got[0].numpy(), (grey / 255 - 0.5) / 0.25, atol=0.5 / 255 / 0.25 + 1e-6)


def test_input_channels_are_read_from_the_first_convolution():
    assert input_channels(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10))) == 1
    assert input_channels(_model()) == 3
    assert input_channels(nn.Linear(3, 2)) is None
