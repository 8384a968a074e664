"""Penultimate features and logits of the demo models over the demo dataset, and the summary numbers."""
import json

import numpy as np
import pytest
import torch

from float32_tolerances import network_atol
from kdx_engine import bundled
from kdx_engine.data import ImageFolderDataset, load_image
from kdx_engine.embeddings import dataset_outputs, embedding_metrics, image_outputs, outputs_dark_knowledge
from kdx_engine.models import PENULTIMATE, load_model


@pytest.fixture(scope="module")
def demo():
    models = {role: load_model(bundled.DEMO_MODELS / f"{role}.pth") for role in ("teacher", "student", "base")}
    dataset = ImageFolderDataset(bundled.DEMO_DATASET, class_names=models["teacher"].info.preprocessing.class_names)
    return models, dataset, dataset_outputs(models, dataset, batch_size=64)


@pytest.mark.numerics
def test_features_are_the_penultimate_layer_and_logits_match(demo):
    models, dataset, outputs = demo
    assert outputs.n == len(dataset) and outputs.labels == dataset.labels
    image = load_image(outputs.paths[5])
    from kdx_engine.data import to_batch

    forward = models["student"].forward(to_batch([image], models["student"].info.preprocessing), [PENULTIMATE])
    # the dataset pass runs batches of 64, these one image: float32 paths that may round differently
    # (measured up to 1.1e-6 relative with one thread and oneDNN off), so within NETWORK_RTOL of the scale
    features, logits = forward.activations[PENULTIMATE][0].double().numpy(), forward.logits[0].double().numpy()
    np.testing.assert_allclose(outputs.features["student"][5], features, rtol=0, atol=network_atol(features))
    np.testing.assert_allclose(outputs.logits["student"][5], logits, rtol=0, atol=network_atol(logits))
    same = image_outputs(models, [image], [outputs.labels[5]])
    np.testing.assert_allclose(same.features["teacher"][0], outputs.features["teacher"][5], rtol=0,
                               atol=network_atol(outputs.features["teacher"][5]))


@pytest.mark.numerics
def test_torchscript_and_onnx_give_the_same_features(demo):
    models, dataset, outputs = demo
    for suffix in ("ts", "onnx"):
        other = load_model(bundled.DEMO_MODELS / f"student.{suffix}")
        result = dataset_outputs({"student": other}, dataset, batch_size=64, indices=range(8))
        expected = outputs.features["student"][:8]
        np.testing.assert_allclose(result.features["student"], expected, rtol=0, atol=network_atol(expected),
                                   err_msg=suffix)


def test_demo_numbers_separate_the_student_from_the_base(demo):
    _, _, outputs = demo
    metrics = embedding_metrics(outputs, k=10)
    dark = outputs_dark_knowledge(outputs, tau=4.0)
    assert metrics.knn["student"].overall.value > metrics.knn["base"].overall.value + 0.3
    ts, tb = metrics.overlap["teacher-student"].overall, metrics.overlap["teacher-base"].overall
    assert ts.low > tb.high
    assert dark.kl_at("student", 4.0).high < dark.kl_at("base", 4.0).low
    json.dumps(metrics.to_json(), allow_nan=False)
    json.dumps(dark.to_json(), allow_nan=False)


def test_a_model_without_a_penultimate_layer_is_named():
    from tests.conftest import backend_for

    class NoClassifier(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    backend = backend_for(NoClassifier(), 3, input_size=16)
    if PENULTIMATE in backend.layer_names():
        pytest.skip("this backend finds a penultimate layer in any module")
    with pytest.raises(ValueError, match="penultimate"):
        image_outputs({"teacher": backend}, [], [])
