"""VAM convolutions: identity at initialisation, the weight formula, the exact fold, loading θ checkpoints."""
import pytest
import torch

from kdx_engine.models import load_model, write_sidecar
from kdx_engine.models.registry import get_architecture
from kdx_engine.vam import (
    VAMConv2d,
    add_vam,
    effective_weight,
    entropy_by_depth,
    entropy_over_checkpoints,
    fold_vam,
    folded_state_dict,
    has_vam_parameters,
    layer_attention,
    vam_convs,
    vam_entropy_penalty,
)


def _student(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_architecture("demo_resnet_small").build(4).eval()


def _randomise_thetas(model: torch.nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in vam_convs(model).values():
            conv.vam_theta.copy_(3 * torch.randn(conv.vam_theta.shape, generator=generator))


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 48, 48, generator=torch.Generator().manual_seed(2))


def test_vam_model_equals_plain_model_at_initialisation(images):
    plain = _student()
    vam = _student()
    converted = add_vam(vam, groups=4)
    assert "stem.0" not in converted and "stage1.0.conv1" in converted  # the RGB stem stays plain
    assert torch.equal(vam(images), plain(images))


def test_effective_weight_scales_each_block_by_g_in_times_attention():
    weight = torch.randn(8, 12, 3, 3)
    theta = torch.randn(2, 3)
    attention = torch.softmax(theta, dim=1)
    folded = effective_weight(weight, theta)
    assert torch.allclose(folded[5, 7], 3 * attention[1, 1] * weight[5, 7])
    assert torch.allclose(folded[0, 11], 3 * attention[0, 2] * weight[0, 11])


def test_fold_leaves_logits_unchanged(images):
    vam = _student()
    add_vam(vam)
    _randomise_thetas(vam)
    folded = fold_vam(vam)
    assert not vam_convs(folded)
    assert torch.allclose(folded(images), vam(images), atol=1e-5)
    plain = _student()
    plain.load_state_dict(folded_state_dict(vam.state_dict()))
    assert torch.allclose(plain(images), vam(images), atol=1e-5)


def test_vam_conv_refuses_channels_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="divisible"):
        VAMConv2d(3, 8, 3, vam_groups=(4, 4))


def test_theta_checkpoint_and_folded_export_both_load(tmp_path, images):
    vam = get_architecture("demo_resnet_small_vam").build(4).eval()
    _randomise_thetas(vam)
    checkpoint = tmp_path / "vam.pth"
    torch.save(vam.state_dict(), checkpoint)
    assert has_vam_parameters(vam.state_dict())
    loaded = load_model(checkpoint)
    assert loaded.info.architecture == "demo_resnet_small_vam"
    assert torch.allclose(loaded.logits(images), vam(images), atol=1e-6)
    folded_path = tmp_path / "folded.pth"
    torch.save(folded_state_dict(vam.state_dict()), folded_path)
    write_sidecar(folded_path, get_architecture("demo_resnet_small").preset.with_classes("abcd"))
    folded = load_model(folded_path)
    assert folded.info.architecture == "demo_resnet_small"
    assert torch.allclose(folded.logits(images), vam(images), atol=1e-5)
    assert not has_vam_parameters(torch.load(folded_path, weights_only=True))


def test_attention_views_read_theta(tmp_path):
    vam = get_architecture("demo_resnet_small_vam").build(4)
    assert all(v == pytest.approx(1.0) for v in entropy_by_depth(vam).values())
    assert float(vam_entropy_penalty(vam).detach()) == pytest.approx(1.0)
    with torch.no_grad():
        vam.stage2[0].conv1.vam_theta[0] = torch.tensor([50.0, 0.0, 0.0, 0.0])
    layers = {layer.layer: layer for layer in layer_attention(vam)}
    assert list(layers) == list(vam_convs(vam))
    changed = layers["stage2.0.conv1"]
    assert changed.attention.shape == (4, 4)
    assert changed.attention.sum(axis=1) == pytest.approx([1.0] * 4)
    assert changed.row_entropy[0] == pytest.approx(0.0, abs=1e-6)
    assert changed.row_entropy[1] == pytest.approx(1.0)
    torch.save({"state_dict": vam.state_dict()}, tmp_path / "later.pth")
    torch.save(get_architecture("demo_resnet_small_vam").build(4).state_dict(), tmp_path / "first.pth")
    series = entropy_over_checkpoints([tmp_path / "first.pth", tmp_path / "later.pth"])
    assert series.shape == (2, len(layers))
    assert series[1].sum() < series[0].sum()


def test_attention_views_refuse_a_plain_model():
    with pytest.raises(ValueError, match="not a VAM checkpoint"):
        layer_attention(_student())
