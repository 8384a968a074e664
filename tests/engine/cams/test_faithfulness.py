import math

import pytest
import torch

from kdx_engine.cams.faithfulness import (
    baseline_images,
    deletion_insertion,
    gaussian_blur,
    pixel_ranks,
    step_counts,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _sum_of_red(batch: torch.Tensor) -> torch.Tensor:
    """Two-class logits [Σ red channel, 0]: class 0 has probability sigmoid(Σ red)."""
    red = batch[:, 0].sum(dim=(-2, -1))
    return torch.stack([red, torch.zeros_like(red)], dim=1)


class CountingScores:
    """Wraps a scores_fn, recording the size of every batch it is given."""

    def __init__(self, fn):
        self.fn, self.batch_sizes = fn, []

    def __call__(self, batch):
        assert not torch.is_grad_enabled()
        self.batch_sizes.append(batch.shape[0])
        return self.fn(batch)


def _hand_image() -> torch.Tensor:
    image = torch.zeros(1, 3, 2, 2)
    image[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    image[0, 1:] = 7.0  # other channels do not reach the score
    return image


def _trapezoid_quarters(values) -> float:
    return 0.25 * (values[0] / 2 + sum(values[1:-1]) + values[-1] / 2)


def test_curves_and_aucs_match_a_hand_computation():
    image = _hand_image()
    saliency = image[:, 0].clone()  # order: 4, 3, 2, 1
    result = deletion_insertion(image, saliency, _sum_of_red, [0], steps=4, baseline="zero")
    deletion = [_sigmoid(s) for s in (10, 6, 3, 1, 0)]
    insertion = [_sigmoid(s) for s in (0, 4, 7, 9, 10)]
    assert result.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result.deletion_curve[0].tolist() == pytest.approx(deletion, abs=1e-6)
    assert result.insertion_curve[0].tolist() == pytest.approx(insertion, abs=1e-6)
    assert result.deletion_auc[0].item() == pytest.approx(_trapezoid_quarters(deletion), abs=1e-6)
    assert result.insertion_auc[0].item() == pytest.approx(_trapezoid_quarters(insertion), abs=1e-6)
    assert result.reasons == (None,) and result.sigma is None and result.targets == (0,)


def test_tied_map_values_are_perturbed_in_row_major_order():
    image = _hand_image()
    saliency = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])  # order: pixels 0, 1, 2, then 3
    result = deletion_insertion(image, saliency, _sum_of_red, [0], steps=4, baseline="zero")
    assert result.deletion_curve[0].tolist() == pytest.approx([_sigmoid(s) for s in (10, 9, 7, 4, 0)], abs=1e-6)


def test_map_on_the_evidence_beats_the_reversed_map():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 8, 8) * 0.2
    images[:, 0, :4, :4] = 1.0

    def region_scores(batch):
        evidence = 12.0 * (batch[:, 0, :4, :4].mean(dim=(-2, -1)) - 0.5)
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)

    good = torch.zeros(2, 8, 8)
    good[:, :4, :4] = 1.0
    good += 0.01 * torch.rand(2, 8, 8)
    for baseline in ("zero", "blur"):
        faithful = deletion_insertion(images, good, region_scores, [0, 0], steps=16, baseline=baseline)
        reversed_ = deletion_insertion(images, -good, region_scores, [0, 0], steps=16, baseline=baseline)
        assert (faithful.deletion_auc < reversed_.deletion_auc).all()
        assert (faithful.insertion_auc > reversed_.insertion_auc).all()


def test_batches_cover_every_step_in_few_calls_and_match_batch_size_one():
    torch.manual_seed(1)
    images, maps = torch.randn(3, 3, 6, 6), torch.rand(3, 6, 6)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 5)).eval()
    batched, single = CountingScores(model), CountingScores(model)
    steps, batch_size, targets = 4, 4, torch.tensor([0, 3, 1])
    result = deletion_insertion(images, maps, batched, targets, steps=steps, batch_size=batch_size)
    reference = deletion_insertion(images, maps, single, targets, steps=steps, batch_size=1)
    per_kind = math.ceil(3 * (steps + 1) / batch_size)
    assert len(batched.batch_sizes) == 2 * per_kind
    assert max(batched.batch_sizes) == batch_size and sum(batched.batch_sizes) == 2 * 3 * (steps + 1)
    assert len(single.batch_sizes) == 2 * 3 * (steps + 1)
    for name in ("deletion_curve", "insertion_curve", "deletion_auc", "insertion_auc"):
        torch.testing.assert_close(getattr(result, name), getattr(reference, name), rtol=1e-5, atol=1e-6)


def test_curve_ends_are_the_original_and_the_baseline_image():
    torch.manual_seed(2)
    images, maps = torch.randn(2, 3, 10, 10), torch.rand(2, 10, 10)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(300, 4)).eval()
    result = deletion_insertion(images, maps, model, [1, 2], steps=5, baseline="blur", sigma=1.5)
    original = torch.softmax(model(images).double(), dim=1)[[0, 1], [1, 2]]
    blurred = torch.softmax(model(gaussian_blur(images, 1.5)).double(), dim=1)[[0, 1], [1, 2]]
    torch.testing.assert_close(result.deletion_curve[:, 0], original.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.insertion_curve[:, -1], original.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.deletion_curve[:, -1], blurred.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.insertion_curve[:, 0], blurred.detach(), rtol=1e-5, atol=1e-6)
    assert result.sigma == 1.5


def test_constant_map_gives_nan_with_reason_and_leaves_others_alone():
    images = torch.rand(2, 3, 4, 4)
    maps = torch.stack([torch.rand(4, 4), torch.zeros(4, 4)])
    result = deletion_insertion(images, maps, _sum_of_red, [0, 0], steps=4, baseline="mean")
    assert result.reasons[0] is None and "constant" in result.reasons[1]
    assert math.isfinite(result.deletion_auc[0]) and math.isnan(result.deletion_auc[1])
    assert torch.isnan(result.insertion_curve[1]).all()


def test_step_counts_round_half_up_when_steps_do_not_divide_the_pixels():
    assert step_counts(9, 4).tolist() == [0, 2, 5, 7, 9]
    assert step_counts(64, 16).tolist() == list(range(0, 65, 4))


def test_pixel_ranks_are_descending_and_stable():
    ranks = pixel_ranks(torch.tensor([[[0.5, 2.0], [0.5, 3.0]]]))
    assert ranks.tolist() == [[[2, 1], [3, 0]]]


def test_blur_keeps_constants_and_mass_and_defaults_to_h_over_20():
    flat = torch.full((1, 3, 12, 12), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    blurred = gaussian_blur(impulse, 1.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(blurred, blurred.flip(-1).flip(-2))
    assert blurred[0, 0, 10, 10] < 0.2
    images = torch.rand(1, 3, 40, 40)
    torch.testing.assert_close(baseline_images(images, "blur"), gaussian_blur(images, 2.0))
    model_result = deletion_insertion(images, torch.rand(1, 40, 40), _sum_of_red, [0], steps=2)
    assert model_result.sigma == 2.0 and model_result.baseline == "blur"


def test_mean_and_zero_baselines_and_unknown_name():
    images = torch.rand(2, 3, 5, 5)
    mean = baseline_images(images, "mean")
    torch.testing.assert_close(mean[:, :, 3, 1], images.mean(dim=(-2, -1)))
    assert (baseline_images(images, "zero") == 0).all()
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_images(images, "noise")


def test_inputs_that_do_not_fit_are_rejected():
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="maps must be"):
        deletion_insertion(images, torch.rand(2, 4, 5), _sum_of_red, [0, 0])
    with pytest.raises(ValueError, match="one target per image"):
        deletion_insertion(images, torch.rand(2, 4, 4), _sum_of_red, [0])
