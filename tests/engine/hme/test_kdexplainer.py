"""KDExplainer: routing as specified, hard trees, per-class paths, loading with its routing state."""
import numpy as np
import pytest
import torch

from kdx_engine.hme import (
    KDExplainerNet,
    class_routing_paths,
    hard_tree,
    mean_routing_entropy,
    routing_matrices,
)
from kdx_engine.models import load_model


def _model(seed: int = 0) -> KDExplainerNet:
    torch.manual_seed(seed)
    model = KDExplainerNet(4, level_sizes=(2, 4, 8), level_widths=(4, 4, 8)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for theta in model.routing:
            theta.copy_(torch.randn(theta.shape, generator=generator))
    return model


def test_routing_shapes_follow_levels_and_classes():
    model = _model()
    assert [tuple(t.shape) for t in model.routing] == [(4, 2), (8, 4), (4, 8)]
    assert model(torch.randn(3, 3, 48, 48)).shape == (3, 4)


def test_soft_routing_is_softmax_over_parents_at_the_temperature():
    model = _model()
    model.temperature.fill_(2.0)
    expected = torch.softmax(model.routing[1] / 2.0, dim=1)
    assert torch.allclose(model.routing_weights(1), expected)


def test_child_input_is_the_routed_mixture_of_parent_outputs():
    model = _model()
    x = torch.randn(2, 3, 48, 48)
    parents = torch.stack([expert(x) for expert in model.levels[0]], 1)
    weights = model.routing_weights(0)
    captured = {}

    def keep_input(module, inputs, output):
        captured["in"] = inputs[0]

    model.levels[1][3].register_forward_hook(keep_input)
    model(x)
    assert torch.allclose(captured["in"], weights[3, 0] * parents[:, 0] + weights[3, 1] * parents[:, 1],
                          atol=1e-6)


def test_hard_routing_is_the_argmax_tree_and_freezes_theta():
    model = _model()
    model.set_hard_routing()
    for index, theta in enumerate(model.routing):
        weights = model.routing_weights(index)
        assert torch.equal(weights.argmax(dim=1), theta.argmax(dim=1))
        assert torch.equal(weights.sum(dim=1), torch.ones(theta.shape[0]))
        assert not theta.requires_grad
    tree = hard_tree(model)
    for k, path in enumerate(tree.class_paths()):
        assert path[-1] == int(model.routing[2][k].argmax())
        assert path[-2] == int(model.routing[1][path[-1]].argmax())
        assert path[0] == int(model.routing[0][path[1]].argmax())
    assert sorted(tree.dendrogram_order()) == [0, 1, 2, 3]


def test_class_paths_are_distributions_over_each_level():
    matrices = routing_matrices(_model(), temperature=1.0)
    paths = class_routing_paths(matrices)
    assert [p.shape for p in paths] == [(4, 2), (4, 4), (4, 8)]
    for path in paths:
        assert path.sum(axis=1) == pytest.approx(np.ones(4))
    assert paths[0] == pytest.approx(matrices[2] @ matrices[1] @ matrices[0])


def test_routing_entropy_is_one_for_uniform_routing():
    model = KDExplainerNet(4, level_sizes=(2, 4), level_widths=(4, 4))
    assert mean_routing_entropy(routing_matrices(model)) == pytest.approx([1.0, 1.0])


def test_state_dict_loads_with_its_hard_routing(tmp_path):
    model = KDExplainerNet(4)
    model.set_hard_routing()
    path = tmp_path / "kdexplainer.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(path)
    assert loaded.info.architecture == "demo_kdexplainer"
    assert bool(loaded.module.hard_routing)
    x = torch.randn(2, 3, 48, 48)
    assert torch.allclose(loaded.logits(x), model.eval()(x), atol=1e-6)
