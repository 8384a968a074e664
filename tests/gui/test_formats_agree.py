"""The same weights in two formats agree with themselves in the window: Teacher = the demo Teacher's
``.pth``, Student = the same Teacher exported as ONNX (or TorchScript). The two slots get the same
preprocessing (no warning), the same probabilities and maps on the image's pixel grid, KL ≈ 0."""
import numpy as np
import pytest

from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from gui_helpers import wait_idle
from kdx_engine.bundled import DEMO_MODELS, DEMO_SAMPLES


@pytest.mark.parametrize("other_format", ["teacher.onnx", "teacher.ts"])
def test_the_same_weights_in_two_formats_give_the_same_numbers_and_maps(window, qtbot, other_format):
    window.slots["teacher"].load(str(DEMO_MODELS / "teacher.pth"))
    window.slots["student"].load(str(DEMO_MODELS / other_format))
    wait_idle(qtbot, window)
    window.gallery.add_paths([str(next((DEMO_SAMPLES / "circle").glob("*[0-9].png")))])
    wait_idle(qtbot, window)

    student_slot = window.slots["student"]
    assert student_slot.warning.isHidden(), student_slot.warning.text()
    comparison = window.session.comparison
    assert comparison is not None and comparison.image_id == window.session.current_image.id
    p_t, p_s = comparison.predictions["teacher"], comparison.predictions["student"]
    np.testing.assert_allclose(p_s.probabilities, p_t.probabilities, atol=1e-4)
    assert p_s.target == p_t.target
    assert comparison.kl_teacher_student < 1e-6
    assert comparison.map_metrics["pearson"] > 0.9999
    assert comparison.map_metrics["share_of_image"] == 1.0

    teacher_map = window.canvas.panels["teacher"].values
    student_map = window.canvas.panels["student"].values
    assert teacher_map.shape == student_map.shape == comparison.image.rgb.shape[:2]
    np.testing.assert_allclose(student_map, teacher_map, atol=1e-4 * float(np.nanmax(teacher_map)))
    assert np.nanmax(np.abs(window.canvas.panels["difference"].values)) < 1e-3


def test_a_users_torchvision_model_as_pth_and_onnx_without_sidecars_agrees_with_itself(window, qtbot, tmp_path):
    """The issue's case: no sidecar, a recognised architecture (.pth) and an opaque graph (.onnx) of the
    same weights on a non-square photo; both must get the same preprocessing and register on the grid."""
    import torch
    import torchvision
    from PIL import Image

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "mine.pth")
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(tmp_path / "mine.onnx"), dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (180, 300, 3), dtype=np.uint8)
    photo[60:120, 200:260] = (250, 40, 40)
    Image.fromarray(photo).save(tmp_path / "photo.png")

    window.slots["teacher"].load(str(tmp_path / "mine.pth"))
    window.slots["student"].load(str(tmp_path / "mine.onnx"))
    wait_idle(qtbot, window)
    window.gallery.add_paths([str(tmp_path / "photo.png")])
    wait_idle(qtbot, window, timeout=120000)

    assert window.slots["student"].warning.isHidden(), window.slots["student"].warning.text()
    comparison = window.session.comparison
    np.testing.assert_allclose(comparison.predictions["student"].probabilities,
                               comparison.predictions["teacher"].probabilities, atol=1e-4)
    assert comparison.kl_teacher_student < 1e-6
    assert comparison.map_metrics["pearson"] > 0.999
    teacher_map = window.canvas.panels["teacher"].values
    student_map = window.canvas.panels["student"].values
    assert teacher_map.shape == student_map.shape == (180, 300)
    inside = ~np.isnan(teacher_map)
    np.testing.assert_array_equal(inside, ~np.isnan(student_map))  # the same crop is undefined in both
    np.testing.assert_allclose(student_map[inside], teacher_map[inside], atol=1e-3 * float(np.nanmax(teacher_map)))
