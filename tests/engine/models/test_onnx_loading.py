"""Loading ONNX files: layer names, fixed batches, routes, the analytic head check, and bad input."""
import onnx
import pytest
import torch
from torch import nn

from conftest import backend_for, make_resnet18
from kdx_engine.cams import CAM_METHODS, ClassTarget
from kdx_engine.models import LOGITS, PENULTIMATE, ModelLoadError, default_target_layer, load_model, probe_layers
from kdx_engine.models.onnx_heads import GradientUnavailable, clear_head_cache
from kdx_engine.models.registry import get_architecture
from onnx_exports import EXPORTERS, export_onnx


def resnet8():
    torch.manual_seed(0)
    return get_architecture("resnet8").build(10).eval()


@pytest.fixture(scope="module")
def resnet8_legacy(tmp_path_factory):
    module = resnet8()
    return module, export_onnx(module, tmp_path_factory.mktemp("r8") / "resnet8.onnx", 32, "legacy")


@pytest.fixture(scope="module")
def resnet18_exports(tmp_path_factory):
    module = make_resnet18()
    folder = tmp_path_factory.mktemp("r18")
    return module, {exporter: export_onnx(module, folder / f"{exporter}.onnx", 64, exporter) for exporter in EXPORTERS}


def targets_of(backend, x):
    return [ClassTarget(int(k)) for k in backend.logits(x).argmax(dim=1)]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_layers_carry_pytorch_module_names(resnet18_exports, exporter):
    _, paths = resnet18_exports
    backend = load_model(paths[exporter])
    names = backend.layer_names()
    assert {"layer1", "layer2.0", "layer3.1", "layer4", "avgpool", "fc", PENULTIMATE} <= set(names)
    assert "layer4.1.relu" not in names  # called twice in a BasicBlock: left out, as for PyTorch
    assert backend.info.format == "onnx" and backend.info.backend == "onnxruntime"
    assert any(note.startswith("route: onnxruntime") for note in backend.info.notes)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_pooling_gemm_head_gradient_matches_the_analytic_one(resnet18_exports, exporter):
    """layer4 → global average pool → Gemm: ∂(c·logits)/∂A = Wᵀc / (H·W) at every position."""
    module, paths = resnet18_exports
    backend = load_model(paths[exporter])
    weight = module.fc.weight.detach()
    for batch in (2, 3):  # a dynamic head serves every batch size
        x = torch.randn(batch, 3, 64, 64)
        forward = backend.forward(x, grad_layer="layer4")
        cotangent = torch.randn(forward.logits.shape)
        activation = forward.activations["layer4"]
        grad = forward.vjp({LOGITS: cotangent})
        spatial = activation.shape[2] * activation.shape[3]
        expected = (cotangent @ weight)[:, :, None, None].expand_as(activation) / spatial
        torch.testing.assert_close(grad, expected, atol=1e-5, rtol=0)
        penultimate = backend.forward(x, grad_layer=PENULTIMATE)
        torch.testing.assert_close(penultimate.vjp({LOGITS: cotangent}), cotangent @ weight, atol=1e-5, rtol=0)


def test_vjp_to_later_layers_matches_autograd(resnet8_legacy):
    module, path = resnet8_legacy
    backend, original = load_model(path), backend_for(module, 10, 32)
    x = torch.randn(2, 3, 32, 32)
    cotangents = {PENULTIMATE: torch.randn(2, 64), "layer3": torch.randn(2, 64, 8, 8), LOGITS: torch.randn(2, 10)}
    got = backend.forward(x, ["layer3", PENULTIMATE], grad_layer="layer2").vjp(cotangents)
    expected = original.forward(x, ["layer3", PENULTIMATE], grad_layer="layer2").vjp(cotangents)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    with pytest.raises(KeyError, match="not downstream"):
        backend.forward(x, ["layer1"], grad_layer="layer2").vjp({"layer1": torch.zeros(2, 16, 32, 32)})


def test_built_heads_are_cached_per_model_hash_layer_and_shape(resnet8_legacy, monkeypatch):
    import onnx_ad

    builds = []
    reverse = onnx_ad.reverse
    monkeypatch.setattr(onnx_ad, "reverse", lambda *a, **k: builds.append(1) or reverse(*a, **k))
    clear_head_cache()
    x = torch.randn(2, 3, 32, 32)
    for _ in range(2):  # a second backend of the same file reuses the heads
        backend = load_model(resnet8_legacy[1])
        for _ in range(2):
            CAM_METHODS["gradcam"](backend, layer="layer2")(x, [ClassTarget(1)] * 2)
    assert len(builds) == 1
    CAM_METHODS["gradcam"](backend, layer="layer2")(x[:1], [ClassTarget(1)])
    assert len(builds) == 2  # a head with convolutions is built per input shape


def test_fixed_batch_of_one_is_looped_over_the_batch(tmp_path):
    module = resnet8()
    backend = load_model(export_onnx(module, tmp_path / "fixed.onnx", 32, "legacy", dynamic_batch=False))
    assert any("fixed batch of 1" in note for note in backend.info.notes)
    x = torch.randn(2, 3, 32, 32)
    original = backend_for(module, 10, 32)
    targets = targets_of(original, x)
    for method in ("gradcam", "ablationcam"):
        got = CAM_METHODS[method](backend, layer="layer3")(x, targets).normalised()
        expected = CAM_METHODS[method](original, layer="layer3")(x, targets).normalised()
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_onnx2torch_route_is_used_only_when_it_converts_and_its_logits_match(resnet18_exports, exporter):
    pytest.importorskip("onnx2torch")
    module, paths = resnet18_exports
    backend = load_model(paths[exporter], onnx_route="onnx2torch")
    if backend.info.backend == "onnxruntime":  # onnx2torch 1.5 has no converter for opset-18 ReduceMean
        assert any(note.startswith("onnx2torch not used:") for note in backend.info.notes)
    else:
        assert any(note.startswith("route: onnx2torch") for note in backend.info.notes)
    x = torch.randn(2, 3, 64, 64)
    original = backend_for(module, 10)
    targets = targets_of(original, x)
    got = CAM_METHODS["gradcam"](backend, layer="layer3")(x, targets).normalised()
    expected = CAM_METHODS["gradcam"](original, layer="layer3")(x, targets).normalised()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert backend.layer_names() == load_model(paths[exporter]).layer_names()


def test_unknown_route_is_refused(resnet8_legacy):
    with pytest.raises(ValueError, match="unknown ONNX route"):
        load_model(resnet8_legacy[1], onnx_route="tensorflow")


def test_a_graph_without_module_names_uses_tensor_names(resnet8_legacy, tmp_path):
    model = onnx.load(str(resnet8_legacy[1]))
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(tmp_path / "anonymous.onnx"))
    backend = load_model(tmp_path / "anonymous.onnx")
    assert any("named by their graph tensors" in note for note in backend.info.notes)
    layer = default_target_layer(probe_layers(backend))
    assert layer == backend.tensor(layer)
    x = torch.randn(2, 3, 32, 32)
    original = backend_for(resnet8_legacy[0], 10, 32)
    targets = targets_of(original, x)
    got = CAM_METHODS["gradcam"](backend, layer=layer)(x, targets).normalised()
    expected = CAM_METHODS["gradcam"](original, layer="layer3")(x, targets).normalised()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


class GeluNet(nn.Module):
    """A small CNN whose head ends in a tanh-GELU, exported and then rewritten as onnxruntime's fused
    ``com.microsoft.FastGelu`` (as onnxruntime's optimisers write it): same numbers, no onnx-ad rule."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.GELU(approximate="tanh"))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.head(self.stem(x)).mean(dim=(2, 3)))


def export_with_fast_gelu(module, path):
    export_onnx(module, path, 16, "legacy")
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "Gelu":
            node.op_type, node.domain = "FastGelu", "com.microsoft"
            del node.attribute[:]
    model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))
    return path


def test_unsupported_operator_in_the_head_names_the_op_and_gradient_free_methods_still_work(tmp_path):
    torch.manual_seed(0)
    module = GeluNet().eval()
    backend = load_model(export_with_fast_gelu(module, tmp_path / "fused.onnx"))
    x = torch.randn(2, 3, 16, 16)
    targets = targets_of(backend, x)
    with pytest.raises(GradientUnavailable, match="FastGelu") as error:
        CAM_METHODS["gradcam"](backend, layer="stem")(x, targets)
    assert "fused.onnx" in str(error.value) and "Score-CAM" in str(error.value)
    original = backend_for(module, 5, 16)
    for method in ("scorecam", "ablationcam"):
        got = CAM_METHODS[method](backend, layer="stem")(x, targets).normalised()
        expected = CAM_METHODS[method](original, layer="stem")(x, targets).normalised()
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_model_without_spatial_layer_loads_but_cams_refuse_it(tmp_path):
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    backend = load_model(export_onnx(module, tmp_path / "mlp.onnx", 8, "legacy"))
    assert backend.info.num_classes == 4
    with pytest.raises(ValueError, match="no layer with a spatial output"):
        CAM_METHODS["gradcam"](backend)
    with pytest.raises(ValueError, match="a CAM needs C×H×W"):
        CAM_METHODS["gradcam"](backend, layer="1")(torch.randn(1, 3, 8, 8), [ClassTarget(0)])


def test_truncated_file_is_a_clear_error(resnet8_legacy, tmp_path):
    data = resnet8_legacy[1].read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"^cut\.onnx: "):
        load_model(tmp_path / "cut.onnx")


def test_non_onnx_file_is_a_clear_error(tmp_path):
    (tmp_path / "notes.onnx").write_text("these are my notes, not a model\n" * 20)
    with pytest.raises(ModelLoadError, match=r"^notes\.onnx: not an ONNX model"):
        load_model(tmp_path / "notes.onnx")


def _point_external_data(path, location):
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(path))


@pytest.mark.parametrize("location", ["../outside.data", "/etc/hostname", "sub/../../outside.data"])
def test_external_data_outside_the_model_folder_is_refused_before_loading(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "external.onnx"
    model = resnet8()
    export_onnx(model, path, 32, "legacy")
    onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True, location="weights.data", size_threshold=0)
    (tmp_path / "outside.data").write_bytes((folder / "weights.data").read_bytes())
    assert load_model(path).info.num_classes == 10  # inside the folder: fine
    _point_external_data(path, location)
    with pytest.raises(ModelLoadError, match=r"^external\.onnx: external data path .* points outside the model's folder"):
        load_model(path)


def test_missing_external_data_file_is_a_clear_error(tmp_path):
    path = tmp_path / "external.onnx"
    export_onnx(resnet8(), path, 32, "legacy")
    onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True, location="weights.data", size_threshold=0)
    (tmp_path / "weights.data").unlink()
    with pytest.raises(ModelLoadError, match=r"^external\.onnx: external data file 'weights\.data' is missing"):
        load_model(path)
