"""Dataset metrics stream their features: with a RAM budget smaller than the features, every (model,
stage) keeps its rows on disk and the metrics are the same numbers."""
import pytest
import torch

from conftest import backend_for, write_colour_dataset
from kdx_engine.data import ImageFolderDataset
from kdx_engine.metrics import dataset_metrics
import importlib
module = importlib.import_module("kdx_engine.metrics.dataset_metrics")
from kdx_engine.models.registry import get_architecture
from kdx_engine.stats.gram import GramAccumulator


def _model(name, seed):
    torch.manual_seed(seed)
    return backend_for(get_architecture(name).build(3).eval(), 3, 32)


def test_features_beyond_the_ram_budget_go_to_disk_with_equal_results(tmp_path, monkeypatch):
    root = write_colour_dataset(tmp_path / "ds", ("red", "green", "blue"), per_class=12, seed=2)
    dataset = ImageFolderDataset(root, class_names=("red", "green", "blue"))
    teacher, student = _model("resnet8", 1), _model("resnet8", 2)
    in_ram = dataset_metrics(teacher, student, dataset, batch_size=7)
    on_disk = []

    class Recording(GramAccumulator):
        def gram(self):
            on_disk.append(self.on_disk)
            return super().gram()

    monkeypatch.setattr(module, "GramAccumulator", Recording)
    monkeypatch.setattr(module, "FEATURE_RAM_BYTES", 1024)
    streamed = dataset_metrics(teacher, student, dataset, batch_size=7)
    assert on_disk and all(on_disk)
    assert streamed.n == in_ram.n == 36
    for a, b in zip(in_ram.fss + [v for m in in_ram.cka_matrix for row in m.values for v in row],
                    streamed.fss + [v for m in streamed.cka_matrix for row in m.values for v in row]):
        a, b = getattr(a, "result", a), getattr(b, "result", b)
        assert b.value == pytest.approx(a.value, abs=1e-12) and b.low == pytest.approx(a.low, abs=1e-12)
    assert [r.result.value for r in streamed.rs] == pytest.approx([r.result.value for r in in_ram.rs], abs=1e-12)
