"""The training loop is deterministic, keeps the checkpoints asked for, and learns; KDExplainer's stages."""
import pytest
import torch

from kdx_engine.data.images import to_batch
from kdx_engine.data.synthetic import SyntheticConfig, generate_split
from kdx_engine.hme import KDExplainerNet
from kdx_engine.models.registry import get_architecture
from kdx_engine.train import (
    CrossEntropy,
    KDExplainerSchedule,
    TrainingData,
    TrainSettings,
    VanillaKD,
    accuracy,
    deterministic,
    model_inputs,
    train,
    train_kdexplainer,
    training_data,
)

PRESET = get_architecture("demo_resnet_small").preset


def _bright_or_dark(n: int = 64, seed: int = 0) -> TrainingData:
    """A trivially learnable task: is the image brighter than grey?"""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    inputs = torch.randn(n, 3, 8, 8, generator=generator) * 0.3 + (labels.float() * 2 - 1)[:, None, None, None]
    return TrainingData(inputs, labels)


def _tiny_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


def test_same_seed_gives_identical_weights_and_checkpoints_are_kept():
    data = _bright_or_dark()
    settings = TrainSettings(epochs=3, batch_size=16, seed=5, checkpoint_epochs=(1, 3))
    with deterministic(threads=1):
        first, second = _tiny_net(), _tiny_net()
        run = train(first, data, CrossEntropy(), settings, log=None)
        train(second, data, CrossEntropy(), settings, log=None)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert sorted(run.checkpoints) == [1, 3]
    assert torch.equal(run.checkpoints[3]["4.weight"], first.state_dict()["4.weight"])
    assert not torch.equal(run.checkpoints[1]["4.weight"], run.checkpoints[3]["4.weight"])
    assert torch.get_num_threads() >= 1 and not torch.are_deterministic_algorithms_enabled()


def test_training_learns_and_distillation_follows_the_teacher():
    data = _bright_or_dark(64)
    settings = TrainSettings(epochs=6, batch_size=16, learning_rate=0.03)
    flipped_teacher = torch.nn.functional.one_hot(1 - data.labels, 2).float() * 10
    unlabelled = TrainingData(data.inputs, torch.full_like(data.labels, -1), flipped_teacher)
    with deterministic(threads=1):
        model, student = _tiny_net(), _tiny_net(1)
        run = train(model, data, CrossEntropy(), settings, log=None)
        train(student, unlabelled, VanillaKD(), settings, log=None)
    assert run.losses[-1] < run.losses[0]
    assert accuracy(model, data.inputs, data.labels) > 0.9
    assert accuracy(student, data.inputs, 1 - data.labels) > 0.9


def test_model_inputs_equal_the_loaders_preprocessing():
    split = generate_split(SyntheticConfig(size=48), "test", 3)
    assert torch.equal(model_inputs(split.images, PRESET), to_batch(list(split.images), PRESET))
    assert training_data(split.images, None, PRESET).labels.tolist() == [-1, -1, -1]


def test_kdexplainer_stages_anneal_then_fix_the_tree():
    split = generate_split(SyntheticConfig(size=48), "teacher_train", 8)
    data = training_data(split.images, split.labels, PRESET)
    torch.manual_seed(0)
    model = KDExplainerNet(4, level_sizes=(2, 2), level_widths=(4, 4))
    temperatures = []
    model.register_forward_pre_hook(lambda m, args: temperatures.append(float(m.temperature)))
    soft, hard = train_kdexplainer(model, data, CrossEntropy(), KDExplainerSchedule(2, 1),
                                   TrainSettings(epochs=1, batch_size=8), log=None)
    assert temperatures[:2] == [10.0, 5.0]
    assert len(soft.losses) == 2 and len(hard.losses) == 1
    assert bool(model.hard_routing) and not any(t.requires_grad for t in model.routing)


def test_attention_logits_learn_at_the_scaled_rate():
    split = generate_split(SyntheticConfig(size=48), "teacher_train", 8)
    data = training_data(split.images, split.labels, PRESET)
    torch.manual_seed(0)
    model = get_architecture("demo_resnet_small_vam").build(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = TrainSettings(epochs=1, batch_size=8, learning_rate=1e-3, weight_decay=0.0)
    train(model, data, CrossEntropy(), settings, log=None)  # one step: Adam moves each entry by ≤ its lr
    theta_step = (model.state_dict()["stage2.0.conv1.vam_theta"] - before["stage2.0.conv1.vam_theta"]).abs()
    weight_step = (model.state_dict()["stage2.0.conv1.weight"] - before["stage2.0.conv1.weight"]).abs()
    assert float(theta_step.max()) == pytest.approx(1e-2, rel=1e-3)
    assert float(weight_step.max()) == pytest.approx(1e-3, rel=1e-3)
