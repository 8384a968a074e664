"""One engine function says how two models' input transforms differ (issue 25): the slot's warning and
the comparison's note both use it, and it looks at everything the transform applies, interpolation and
channels included, compared exactly."""
from kdx_engine.models import Preprocessing, preprocessing_difference


def test_every_part_of_the_transform_is_compared():
    teacher = Preprocessing(input_size=224, resize=256)
    assert preprocessing_difference(Preprocessing(input_size=224, resize=256), teacher) is None
    assert preprocessing_difference(Preprocessing(input_size=224, resize=256, interpolation="bicubic"), teacher) == \
        "preprocesses differently from the Teacher: interpolation bicubic vs interpolation bilinear"
    assert preprocessing_difference(Preprocessing(input_size=224, resize=256, channels=1), teacher) == \
        "preprocesses differently from the Teacher: channels 1 vs channels 3"
    nearly = Preprocessing(input_size=224, resize=256, mean=(0.485, 0.456, 0.4061))
    assert "mean 0.485, 0.456, 0.4061 vs mean 0.485, 0.456, 0.406" in preprocessing_difference(nearly, teacher)
    assert preprocessing_difference(Preprocessing(input_size=32), teacher, "Student") == \
        "preprocesses differently from the Student: resize to 32×32 vs resize 256, crop 224"
