"""A one-channel (MNIST-style) model loads and is explained on the grey image; a model returning a tuple
or a dict says which part it took as the logits (issue 24)."""
import numpy as np
import torch
from PIL import Image
from torch import nn

from kdx_engine.data import load_image, to_batch
from kdx_engine.models import load_model


class GreyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class TupleNet(GreyNet):
    def forward(self, x):
        logits = super().forward(x)
        return torch.log_softmax(logits, dim=1), logits


class DictNet(GreyNet):
    def forward(self, x):
        return {"features": torch.zeros(x.shape[0], 3), "logits": super().forward(x)}


def _saved(tmp_path, cls, name):
    torch.manual_seed(0)
    model = cls().eval()
    traced = torch.jit.trace(model, torch.zeros(1, 1, 28, 28), strict=False)
    traced.save(str(tmp_path / name))
    (tmp_path / f"{name}.kdx.json").write_text('{"input_size": 28}')
    return model, tmp_path / name


def test_a_one_channel_model_gets_grey_inputs(tmp_path):
    torch.manual_seed(0)
    model = GreyNet().eval()
    traced = torch.jit.trace(model, torch.zeros(1, 1, 28, 28))
    traced.save(str(tmp_path / "grey.pt"))
    (tmp_path / "grey.pt.kdx.json").write_text('{"input_size": 28}')  # a sidecar that says nothing of channels
    backend = load_model(tmp_path / "grey.pt")
    assert backend.info.preprocessing.channels == 1 and backend.info.num_classes == 10
    assert any("one input channel" in note for note in backend.info.notes)
    rgb = np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "digit.png")
    x = to_batch([load_image(tmp_path / "digit.png")], backend.info.preprocessing)
    assert x.shape[1] == 1
    grey = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0
    expected = (grey - backend.info.preprocessing.mean[0]) / backend.info.preprocessing.std[0]
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-5)
    torch.testing.assert_close(backend.logits(x), model(x))


def test_tuple_and_dict_outputs_name_the_part_taken(tmp_path):
    for cls, name, said in ((TupleNet, "tuple.pt", "element 1"), (DictNet, "dict.pt", "output 'logits'")):
        model, path = _saved(tmp_path, cls, name)
        backend = load_model(path)
        notes = [note for note in backend.info.notes if note.startswith("logits: ")]
        assert len(notes) == 1 and said in notes[0], backend.info.notes
        x = torch.randn(2, 1, 28, 28)
        expected = model(x)[1] if cls is TupleNet else model(x)["logits"]
        torch.testing.assert_close(backend.logits(x), expected)
