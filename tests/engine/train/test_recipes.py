"""The training losses are the formulas METHODS §7–§8 state."""
import pytest
import torch
from torch.nn import functional as F

from kdx_engine.models.registry import get_architecture
from kdx_engine.train import (
    UNLABELLED,
    Batch,
    CrossEntropy,
    LabelSmoothing,
    VAMLoss,
    VanillaKD,
    distillation_divergence,
    labelled_cross_entropy,
    vanilla_kd_loss,
)
from kdx_engine.vam import vam_entropy_penalty

GEN = torch.Generator().manual_seed(0)
STUDENT = torch.randn(6, 4, generator=GEN)
TEACHER = torch.randn(6, 4, generator=GEN)
LABELS = torch.tensor([0, 1, UNLABELLED, 3, UNLABELLED, 2])


class Fixed(torch.nn.Module):
    """A 'model' that returns given logits, so a recipe's loss can be checked by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, x):
        return self.logits


def test_cross_entropy_ignores_unlabelled_rows():
    labelled = LABELS != UNLABELLED
    expected = F.cross_entropy(STUDENT[labelled], LABELS[labelled])
    assert labelled_cross_entropy(STUDENT, LABELS) == pytest.approx(float(expected))
    assert float(labelled_cross_entropy(STUDENT, torch.full((6,), UNLABELLED))) == 0.0


def test_kd_divergence_is_tau_squared_kl_teacher_to_student():
    tau = 4.0
    p = torch.softmax(TEACHER / tau, 1)
    q = torch.softmax(STUDENT / tau, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    assert distillation_divergence(STUDENT, TEACHER, tau) == pytest.approx(float(tau ** 2 * kl), rel=1e-5)


def test_vanilla_kd_weights_ce_and_kl():
    expected = (0.1 * labelled_cross_entropy(STUDENT, LABELS)
                + 0.9 * distillation_divergence(STUDENT, TEACHER, 4.0))
    assert vanilla_kd_loss(STUDENT, LABELS, TEACHER) == pytest.approx(float(expected))
    batch = Batch(torch.zeros(6, 1), LABELS, TEACHER)
    assert float(VanillaKD(r=0.3, a=0.7, tau=2.0)(Fixed(STUDENT), batch).detach()) == pytest.approx(
        float(vanilla_kd_loss(STUDENT, LABELS, TEACHER, 0.3, 0.7, 2.0)))


def test_vanilla_kd_needs_teacher_logits():
    with pytest.raises(ValueError, match="teacher logits"):
        VanillaKD()(Fixed(STUDENT), Batch(torch.zeros(6, 1), LABELS))


def test_label_smoothing_matches_smoothed_targets():
    labelled = LABELS != UNLABELLED
    logits, labels = STUDENT[labelled], LABELS[labelled]
    targets = 0.9 * F.one_hot(labels, 4) + 0.1 / 4
    expected = -(targets * F.log_softmax(logits, 1)).sum(1).mean()
    batch = Batch(torch.zeros(6, 1), LABELS)
    assert float(LabelSmoothing(0.1)(Fixed(STUDENT), batch).detach()) == pytest.approx(float(expected), rel=1e-6)
    assert float(CrossEntropy()(Fixed(STUDENT), batch).detach()) == pytest.approx(float(labelled_cross_entropy(STUDENT, LABELS)))


def test_vam_loss_adds_gamma_times_normalised_row_entropy():
    model = get_architecture("demo_resnet_small_vam").build(4).eval()
    x = torch.randn(3, 3, 48, 48, generator=GEN)
    batch = Batch(x, torch.tensor([0, 1, 2]), torch.randn(3, 4, generator=GEN))
    assert float(vam_entropy_penalty(model).detach()) == pytest.approx(1.0)
    expected = float(VanillaKD()(model, batch).detach()) + 0.1
    assert float(VAMLoss()(model, batch).detach()) == pytest.approx(expected, rel=1e-5)
