"""UniCAM and FSS/RS/CKA on vision transformers: UniCAM's feature layer is the pre-logits token (a distilled
DeiT's class token, or its distillation token as a separate target) and its map is Grad-CAM's pipeline on
the patch grid; the dataset metrics run per block. Oracles are computed here with hooks on the timm model."""
from __future__ import annotations

from pathlib import Path

import timm
import torch

from conftest import backend_for
from kdx_engine.bundled import DEMO_DATASET, DEMO_SAMPLES
from kdx_engine.data.datasets import ImageFolderDataset
from kdx_engine.data.images import load_image, to_batch
from kdx_engine.metrics.dataset_metrics import dataset_metrics
from kdx_engine.models.backend import PENULTIMATE, head_input
from kdx_engine.stats import debiased_linear_cka, r2_star
from kdx_engine.unicam import ReferenceSet, UniCam, unicam_score

SIZE = 48  # the demo images' size: 3×3 patches of 16


def _deit(seed, distilled=True, classes=4):
    torch.manual_seed(seed)
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return timm.create_model(name, pretrained=False, num_classes=classes, img_size=SIZE, embed_dim=48, depth=3,
                             num_heads=3).eval()


def _oracle_map(model, reference_x, reference_y, query, query_y, token):
    """UniCAM by hand: L(query) with the reference rows fixed, g = ∂L/∂A at blocks[-1].norm1 (patch tokens),
    Grad-CAM weights on the 3×3 grid."""
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["a"] = output

    handle = model.blocks[-1].norm1.register_forward_hook(keep)
    with torch.enable_grad():
        for param in model.parameters():
            param.requires_grad_(False)
        x = query.clone().requires_grad_(True)
        features = model.forward_features(x)[:, token].to(torch.float64)
        score = unicam_score(torch.cat([reference_x, features]), torch.cat([reference_y, query_y]), None)
        score.backward()
    handle.remove()
    activation, grad = captured["a"][0, 2:].detach(), captured["a"].grad[0, 2:]
    weights = grad.mean(dim=0)
    return torch.relu((activation * weights).sum(dim=1)).reshape(3, 3)


def test_unicam_of_a_deit_uses_its_pre_logits_tokens_as_features():
    x_model, y_model = _deit(0), _deit(1)
    x_backend, y_backend = backend_for(x_model, 4, SIZE), backend_for(y_model, 4, SIZE)
    reference = ReferenceSet.from_folder(DEMO_DATASET, n=8, seed=0)
    query_image = load_image(Path(DEMO_SAMPLES) / "circle" / "00000.png")  # a sample, not in the demo dataset
    assert not reference.contains(query_image)
    pre = x_backend.info.preprocessing
    refs, query = to_batch(list(reference.images), pre), to_batch([query_image], pre)
    maps = {}
    for layer, token in ((PENULTIMATE, 0), (head_input("head_dist"), 1)):  # X's and Y's features: that token
        with torch.no_grad():
            y_tokens = y_model.forward_features(torch.cat([refs, query]))[:, token].to(torch.float64)
            x_tokens = x_model.forward_features(refs)[:, token].to(torch.float64)
        unicam = UniCam(x_backend, y_backend, reference, feature_layer=layer)
        assert unicam.layer == "blocks.2.norm1"
        result = unicam.explain(query_image)
        expected = _oracle_map(x_model, x_tokens, y_tokens[:-1], query, y_tokens[-1:], token)
        assert expected.max() > 1e-3  # a map, not a blank
        torch.testing.assert_close(result.low_res[0], expected.to(result.low_res.dtype), atol=1e-6, rtol=1e-4)
        assert result.details["unicam"]["feature_layer"] == layer
        maps[layer] = result.low_res[0]
    assert not torch.allclose(maps[PENULTIMATE], maps[head_input("head_dist")])  # separate targets


def test_fss_rs_and_cka_run_per_block_of_a_vit():
    teacher, student = backend_for(_deit(0, distilled=False), 4, SIZE), backend_for(_deit(1), 4, SIZE)
    dataset = ImageFolderDataset(DEMO_DATASET)
    result = dataset_metrics(teacher, student, dataset, batch_size=64)
    blocks = ["blocks.0", "blocks.1", "blocks"]  # the last block is listed as its container (same tensor)
    assert result.stages == {"teacher": blocks, "student": blocks}
    matrix = result.fss_matrix[0]
    assert (matrix.rows, matrix.columns) == (blocks, blocks)
    # oracle: the first blocks' token features of every image, gathered with hooks, R²* and debiased CKA
    feats = {}
    for role, model in (("teacher", teacher.module), ("student", student.module)):
        rows = []
        handle = model.blocks[0].register_forward_hook(lambda _m, _i, out: rows.append(out.flatten(1)))
        with torch.no_grad():
            for start in range(0, len(dataset), 64):
                images = [dataset[i][0] for i in range(start, min(start + 64, len(dataset)))]
                model(to_batch(images, teacher.info.preprocessing))
        handle.remove()
        feats[role] = torch.cat(rows).to(torch.float64)
    assert result.n == len(dataset) == feats["teacher"].shape[0]
    expected_fss = float(r2_star(feats["teacher"], feats["student"]))
    expected_cka = float(debiased_linear_cka(feats["teacher"], feats["student"]))
    assert abs(matrix.values[0][0].value - expected_fss) < 1e-6
    assert abs(result.cka_matrix[0].values[0][0].value - expected_cka) < 1e-6
    assert {(r.model, r.layer) for r in result.rs} >= {("teacher", "blocks.0"), ("student", "blocks")}
    assert all(r.result.low <= r.result.value <= r.result.high for r in result.rs)
