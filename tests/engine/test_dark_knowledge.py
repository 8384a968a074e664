"""Softened outputs, KL and entropy under a temperature, against hand-computed cases."""
import math

import numpy as np
import pytest

from kdx_engine.dark_knowledge import (
    dark_knowledge, entropy, kl_curve, kl_divergence, mean_interval, proportion_interval, similar_classes,
    soften_image, softened, softened_probabilities, top_k_agreement,
)


def test_tau_one_is_the_models_own_softmax():
    z = np.array([1.0, 2.0, 0.5])
    expected = np.exp(z) / np.exp(z).sum()
    assert np.allclose(softened(z, 1.0), expected, atol=1e-15)


def test_large_tau_tends_to_uniform():
    z = np.array([[9.0, -3.0, 0.0, 4.0]])
    assert np.allclose(softened(z, 1e8), 0.25, atol=1e-7)
    assert np.max(np.abs(softened(z, 100.0) - 0.25)) < np.max(np.abs(softened(z, 10.0) - 0.25))


def test_hand_computed_two_class_case():
    # logits (ln 3, 0) at τ = 1 give (3/4, 1/4); at τ = 2, (√3, 1)/(√3 + 1)
    z = np.array([math.log(3.0), 0.0])
    assert np.allclose(softened(z, 1.0), [0.75, 0.25])
    r3 = math.sqrt(3.0)
    assert np.allclose(softened(z, 2.0), [r3 / (r3 + 1), 1 / (r3 + 1)])
    assert entropy([0.75, 0.25]) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert entropy([0.25] * 4) == pytest.approx(math.log(4))
    assert kl_divergence([0.75, 0.25], [0.5, 0.5]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_probabilities_soften_exactly_as_their_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 7)) * 3
    p = softened(z, 1.0)
    for tau in (1.0, 2.5, 4.0, 20.0):
        assert np.allclose(softened_probabilities(p, tau), softened(z, tau), atol=1e-12)


def test_one_image_softened_with_kls_and_entropies():
    zt, zs = np.array([3.0, 1.0, 0.0]), np.array([2.0, 2.0, 0.0])
    probs = {"teacher": softened(zt, 1), "student": softened(zs, 1)}
    record = soften_image(probs, 4.0)
    pt, ps = softened(zt, 4), softened(zs, 4)
    assert record.kl_teacher_student == pytest.approx(float(np.sum(pt * np.log(pt / ps))))
    assert record.kl_teacher_base is None
    assert record.entropies["teacher"] == pytest.approx(float(-np.sum(pt * np.log(pt))))
    assert soften_image({"teacher": probs["teacher"], "student": probs["teacher"]}, 3.0).kl_teacher_student == 0.0


def test_bad_temperature_is_refused_with_its_name():
    with pytest.raises(ValueError, match="temperature"):
        softened([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="K ≥ 2"):
        softened([1.0], 1.0)


def test_mean_interval_is_the_normal_interval_and_wilson_known_value():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    v = mean_interval(x, bounds=(-np.inf, np.inf))
    half = 1.959963984540054 * np.std(x, ddof=1) / 2
    assert (v.value, v.low, v.high) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    w = proportion_interval(8, 10)  # Wilson 95%: [0.4902, 0.9433]
    assert (w.low, w.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert proportion_interval(10, 10).high == 1.0


def test_kl_curve_mean_over_images_and_zero_for_identical_models():
    rng = np.random.default_rng(1)
    zt, zs = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    curve = kl_curve(zt, zs, (1.0, 4.0))
    direct = np.mean([kl_divergence(softened(a, 4.0), softened(b, 4.0)) for a, b in zip(zt, zs)])
    assert curve[1].kl.value == pytest.approx(direct)
    assert curve[1].kl.low < direct < curve[1].kl.high
    assert curve[0].kl.value > curve[1].kl.value  # softening brings the distributions together
    assert kl_curve(zt, zt, (2.0,))[0].kl.value == 0.0


def test_similar_classes_name_the_class_with_most_teacher_mass():
    # class 0 images: the Teacher gives class 2 more mass than class 1; class 1 images: class 0 most
    zt = np.array([[5.0, 0.0, 2.0], [6.0, 0.5, 3.0], [1.0, 5.0, -1.0]])
    rows = similar_classes(zt, [0, 0, 1], tau=1.0, per_class=1, others={"student": zt})
    assert [(r.true_class, r.other_class, r.n) for r in rows] == [(0, 2, 2), (1, 0, 1)]
    expected = softened(zt[:2], 1.0)[:, 2].mean()
    assert rows[0].mass.value == pytest.approx(expected)
    assert rows[0].model_mass["student"].value == pytest.approx(expected)


def test_top_k_agreement():
    zt = np.array([[3.0, 2, 1, 0], [0, 3, 2, 1], [0, 1, 3, 2]])
    zs = np.array([[3.0, 2, 1, 0], [3, 0, 2, 1], [0, 3, 2, 1]])  # top-1 agrees once; T's top-1 in S's top-2 twice
    assert top_k_agreement(zt, zs, 1).value == pytest.approx(1 / 3)
    assert top_k_agreement(zt, zs, 2).value == pytest.approx(2 / 3)
    summary = dark_knowledge({"teacher": zt, "student": zs}, [0, 1, 2], top_k=5)
    assert summary.top_k == 4 and summary.agreement["student"]["topk"].value == 1.0
    assert summary.kl_at("student", 4.0).value == pytest.approx(kl_curve(zt, zs, (4.0,))[0].kl.value)
    assert summary.kl_at("base", 4.0) is None


def test_sidecar_carries_an_optional_distillation_temperature(tmp_path):
    from kdx_engine import bundled
    from kdx_engine.models.preprocessing import Preprocessing, read_sidecar, write_sidecar

    assert read_sidecar(bundled.DEMO_MODELS / "student.pth").distillation_temperature == 4.0
    assert read_sidecar(bundled.DEMO_MODELS / "base.pth").distillation_temperature is None
    model = tmp_path / "m.pth"
    write_sidecar(model, Preprocessing(input_size=32))
    assert "distillation_temperature" not in (tmp_path / "m.pth.kdx.json").read_text()
    write_sidecar(model, Preprocessing(input_size=32, distillation_temperature=3))
    assert read_sidecar(model).distillation_temperature == 3.0
    with pytest.raises(ValueError, match="distillation_temperature"):
        Preprocessing(distillation_temperature=-1.0)


def test_top_k_agreement_matches_a_sort_on_random_logits():
    rng = np.random.default_rng(4)
    zt, zs = rng.normal(size=(300, 50)), rng.normal(size=(300, 50))
    for k in (1, 5, 20):
        top = np.argsort(-zs, axis=1)[:, :k]
        expected = np.mean([zt[i].argmax() in top[i] for i in range(300)])
        assert top_k_agreement(zt, zs, k).value == pytest.approx(expected)
