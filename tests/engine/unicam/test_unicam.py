"""UniCAM: the cached path equals recomputing everything with autograd; variants; reference sets."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import backend_for, make_cifar
from kdx_engine.data import load_image, to_batch
from kdx_engine.unicam import ReferenceSet, UniCam, distilled_and_residual


def _model(seed):
    return make_cifar("resnet8", 3, seed)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            pixels[..., "abc".index(c)] //= 3  # a class-dependent colour shift
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    query = root.parent / "query.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(query)
    return root, query


def _centred(d):
    n = d.shape[0]
    r = d.sum(1, keepdim=True) - d.diagonal()[:, None]
    c = d.sum(0, keepdim=True) - d.diagonal()[None, :]
    g = d.sum() - d.diagonal().sum()
    out = d - r / (n - 2) - c / (n - 2) + g / ((n - 1) * (n - 2))
    return out * (1 - torch.eye(n, dtype=d.dtype))


def _naive_map(x_model, y_model, images, labels, layer):
    """Recompute the whole batch from scratch, autograd through every model and statistic."""
    x_model = copy.deepcopy(x_model).requires_grad_(True)
    y_model = copy.deepcopy(y_model)
    store = {}
    x_model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    x_model.fc.register_forward_hook(lambda m, i, o: store.__setitem__("F", i[0]))
    y_model.fc.register_forward_hook(lambda m, i, o: store.__setitem__("FY", i[0]))
    x = images.clone().requires_grad_(True)
    x_model(x)
    y_model(images)
    fx, fy = store["F"].double(), store["FY"].double().detach()
    dist = lambda f: torch.sqrt(((f[:, None] - f[None]) ** 2).sum(-1) + 1e-18)  # noqa: E731
    n = len(labels)
    inner = lambda a, b: (a * b).sum() / (n * (n - 3))  # noqa: E731
    a, b = _centred(dist(fx)), _centred(dist(fy))
    g = _centred(dist(F.one_hot(torch.tensor(labels)).double()))
    residual = a - inner(a, b) / inner(b, b) * b
    score = inner(residual, g) / torch.sqrt(inner(residual, residual) * inner(g, g))
    (grad,) = torch.autograd.grad(score, store["A"])
    act, grad = store["A"][-1], grad[-1]
    cam = torch.relu((grad.mean(dim=(1, 2))[:, None, None] * act).sum(0))
    return F.interpolate(cam[None, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def test_cached_unicam_equals_recomputing_everything(folder):
    root, query_path = folder
    student, base = _model(1), _model(2)
    sb, bb = backend_for(copy.deepcopy(student), 3, 32), backend_for(copy.deepcopy(base), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8, seed=0)
    query = load_image(query_path)
    explainer = UniCam(sb, bb, reference, layer="layer3")
    result = explainer.explain(query, label=2)
    labels = [*reference.labels, 2]
    images = to_batch([*reference.images, query], sb.info.preprocessing)
    expected = _naive_map(student, base, images, labels, "layer3")
    assert expected.abs().max() > 0
    torch.testing.assert_close(result.maps[0].double(), expected.detach().double(), atol=1e-6, rtol=1e-5)
    # a second query reuses the cached reference rows and still matches
    again = UniCam(sb, bb, reference, layer="layer3").explain(query, label=2)
    torch.testing.assert_close(again.maps, result.maps)


def test_distilled_and_residual_record_what_they_removed(folder):
    root, query_path = folder
    sb, bb = backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8, seed=0)
    distilled, residual = distilled_and_residual(sb, bb, reference, load_image(query_path), label=0)
    assert distilled.maps.shape == residual.maps.shape == (1, 32, 32)
    info = distilled.details["unicam"]
    assert info["n"] == 8 and len(info["reference_hashes"]) == 7 and info["variant"] == "label-guided"
    assert not torch.allclose(distilled.maps, residual.maps)
    # the pair shares its forwards; each map equals the one computed on its own
    alone = UniCam(bb, sb, reference).explain(load_image(query_path), label=0)
    torch.testing.assert_close(residual.maps, alone.maps, atol=1e-7, rtol=1e-6)


def test_removing_a_model_from_itself_leaves_nothing(folder):
    root, query_path = folder
    model = _model(1)
    a, b = backend_for(copy.deepcopy(model), 3, 32), backend_for(copy.deepcopy(model), 3, 32)
    result = UniCam(a, b, ReferenceSet.from_folder(root, n=8), layer="layer3").explain(load_image(query_path), 0)
    assert (result.maps == 0).all() and "all-zero map" in result.notes[0]


def test_label_free_variant_and_label_source(folder):
    root, query_path = folder
    sb, bb = backend_for(_model(1), 3, 32), backend_for(_model(2), 3, 32)
    reference = ReferenceSet.from_folder(root, n=8)
    free = UniCam(sb, bb, reference, variant="label-free").explain(load_image(query_path))
    assert free.details["unicam"]["label_source"] == "none (label-free)"
    assert torch.isfinite(free.maps).all() and free.maps.max() > 0
    guided = UniCam(sb, bb, reference).explain(load_image(query_path))
    assert "prediction" in guided.details["unicam"]["label_source"]


def test_reference_set_is_seeded_and_balanced(folder):
    root, _ = folder
    first, again = ReferenceSet.from_folder(root, n=7, seed=3), ReferenceSet.from_folder(root, n=7, seed=3)
    assert first.key == again.key
    assert sorted(first.labels) == [0, 0, 1, 1, 2, 2]
    assert ReferenceSet.from_folder(root, n=7, seed=4).key != first.key
    with pytest.raises(ValueError, match="needs 15"):
        ReferenceSet.from_folder(root, n=16)
