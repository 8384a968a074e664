"""The committed demo zoo: every file loads with ``load_model`` and scores, on the fixed test slice,
the accuracy recorded when it was built (within 1 point)."""
from pathlib import Path

import pytest
import torch

from kdx_engine.bundled import DEMO_MODELS
from kdx_engine.models import load_model
from kdx_engine.train import model_inputs
from kdx_engine.vam import has_vam_parameters
from kdx_engine.zoo import fixed_test_slice, read_zoo

ZOO_DIR = DEMO_MODELS
SAMPLES_DIR = ZOO_DIR.parent / "samples"
MANIFEST = read_zoo(ZOO_DIR)
FILES = [(name, fmt) for name, model in MANIFEST.models.items() for fmt in model.files]
WEIGHTS_BUDGET = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def slice_split():
    return fixed_test_slice(MANIFEST.data, MANIFEST.test_slice)


@pytest.mark.parametrize("name, fmt", FILES, ids=[f"{n}-{f}" for n, f in FILES])
def test_file_scores_the_recorded_accuracy(name, fmt, slice_split):
    model = MANIFEST.models[name]
    backend = load_model(ZOO_DIR / model.files[fmt])
    assert backend.info.preprocessing.class_names == tuple(MANIFEST.data.classes)
    if fmt == "state_dict":
        assert backend.info.architecture == model.architecture
    inputs = model_inputs(slice_split.images, backend.info.preprocessing)
    with torch.no_grad():
        predicted = torch.cat([backend.logits(inputs[i:i + 250]).argmax(1) for i in range(0, len(inputs), 250)])
    score = float((predicted == torch.as_tensor(slice_split.labels)).float().mean())
    assert score == pytest.approx(model.test_accuracy, abs=0.01)


def test_zoo_has_every_role_and_format():
    roles = {m.role for m in MANIFEST.models.values()}
    assert {"teacher", "base", "student", "vam-student", "vam-student-folded", "kdexplainer"} <= roles
    for name in ("teacher", "student"):
        assert set(MANIFEST.models[name].files) == {"state_dict", "torchscript", "onnx"}
    assert has_vam_parameters(torch.load(ZOO_DIR / MANIFEST.models["student_vam"].file, weights_only=True))


def test_checkpoints_load_and_start_at_the_initial_weights():
    for name in ("base", "student", "student_vam"):
        checkpoints = MANIFEST.models[name].checkpoints
        assert 0 in checkpoints and len(checkpoints) >= 3
        backend = load_model(ZOO_DIR / checkpoints[max(checkpoints)])
        assert backend.info.architecture == MANIFEST.models[name].architecture


def test_committed_weights_fit_the_budget():
    size = sum(p.stat().st_size for p in ZOO_DIR.rglob("*") if p.is_file())
    assert size <= WEIGHTS_BUDGET


def test_samples_are_an_image_folder_with_masks():
    images = [p for p in SAMPLES_DIR.rglob("*.png") if not p.name.endswith(".mask.png")]
    assert len(images) >= 8
    assert {p.parent.name for p in images} == set(MANIFEST.data.classes)
    assert all(p.with_name(p.stem + ".mask.png").is_file() for p in images)
