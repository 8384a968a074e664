"""An ONNX export of a DeiT-tiny gives the same maps as PyTorch (1e-4): onnx-ad differentiates the head
from ``blocks[-1].norm1`` to the logits (LayerNormalization, Gelu, Softmax, MatMul); a head holding an
operator it cannot differentiate is refused naming that operator, and the gradient-free methods run
through onnxruntime instead (PRODUCT §3)."""
from __future__ import annotations

import contextlib
import io
import warnings

import onnx
import pytest
import timm
import torch

from conftest import backend_for
from kdx_engine.cams import ClassTarget, cam_method
from kdx_engine.models import load_model
from kdx_engine.models.onnx_heads import GradientUnavailable
from kdx_engine.models.preprocessing import Preprocessing, write_sidecar

SIZE = 64
HEAD_OPS = {"LayerNormalization", "Gelu", "Softmax", "MatMul"}


def _export(model, path):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=20,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    write_sidecar(path, Preprocessing(input_size=SIZE, resize=None, source="sidecar"))
    return path


@pytest.fixture(scope="module")
def deit(tmp_path_factory):
    """A seeded distilled DeiT-tiny (head scaled as a trained one is) and its ONNX export (opset 20)."""
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=5, img_size=SIZE).eval()
    with torch.no_grad():
        model.head.weight.mul_(30)
        model.head_dist.weight.mul_(30)
    return model, _export(model, tmp_path_factory.mktemp("deit") / "deit_tiny.onnx")


def _images():
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def test_onnx_deit_tiny_gives_pytorchs_maps_at_the_automatic_layer(deit):
    model, path = deit
    onnx_backend, torch_backend = load_model(path), backend_for(model, 5, SIZE)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert HEAD_OPS <= ops  # the head onnx-ad differentiates holds them all
    targets = [ClassTarget(1), ClassTarget(3)]
    for method in ("gradcam", "gradcam++", "layercam"):
        got = cam_method(method)(onnx_backend)(_images(), targets)
        expected = cam_method(method)(torch_backend)(_images(), targets)
        assert got.layer == expected.layer == "blocks.11.norm1", method
        assert all(note is None for note in got.notes), method
        torch.testing.assert_close(got.normalised(), expected.normalised(), atol=1e-4, rtol=0)
    assert any("onnx-ad" in note for note in onnx_backend.info.notes)


def test_the_onnx_penultimate_of_a_distilled_deit_is_its_class_token(deit):
    model, path = deit
    x = _images()
    got = load_model(path).forward(x, ["@penultimate"]).activations["@penultimate"]
    with torch.no_grad():
        torch.testing.assert_close(got, model.forward_features(x)[:, 0], atol=1e-4, rtol=1e-4)


def test_a_head_op_onnx_ad_cannot_differentiate_is_named_and_gradient_free_methods_still_run(deit, tmp_path):
    model, path = deit
    graph = onnx.load(str(path))
    last_gelu = [node for node in graph.graph.node if node.op_type == "Gelu"][-1]
    last_gelu.domain = "com.microsoft"  # onnxruntime's contrib Gelu: it runs, but onnx-ad has no rule for it
    for attribute in list(last_gelu.attribute):
        last_gelu.attribute.remove(attribute)
    graph.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    patched = tmp_path / "deit_contrib.onnx"
    onnx.save(graph, str(patched))
    write_sidecar(patched, Preprocessing(input_size=SIZE, resize=None, source="sidecar"))
    backend = load_model(patched)
    with pytest.raises(GradientUnavailable, match=r"com\.microsoft\.Gelu.*\n?.*scorecam"):
        cam_method("gradcam")(backend)(_images(), [ClassTarget(1), ClassTarget(3)])
    image = _images()[:1]
    got = cam_method("scorecam")(backend, batch_size=96)(image, [ClassTarget(3)])
    expected = cam_method("scorecam")(backend_for(model, 5, SIZE), batch_size=96)(image, [ClassTarget(3)])
    torch.testing.assert_close(got.normalised(), expected.normalised(), atol=1e-4, rtol=0)
