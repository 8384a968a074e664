"""An undefined FSS or RS names what is constant (issue 26): the model and stage whose features are the
same for every image, or the label when every image has one class."""
import numpy as np

from kdx_engine.metrics.dataset_metrics import _named_cause
from kdx_engine.stats.distance_correlation import distance_matrix, label_embedding
from kdx_engine.stats.jackknife import jackknife_r2_star

RNG = np.random.default_rng(0)


def test_a_constant_stage_is_named():
    varied, constant = distance_matrix(RNG.normal(size=(12, 5))), distance_matrix(np.ones((12, 5)))
    value = jackknife_r2_star(varied, constant).as_value()
    assert value.reason == "undefined: a variance term is zero"
    named = _named_cause(value, [("the teacher's layer3 features", varied), ("the student's layer2 features", constant)])
    assert named.reason == "undefined: the student's layer2 features are the same for every image (zero variance)"


def test_a_single_label_is_named_and_a_defined_value_is_left_alone():
    x = distance_matrix(RNG.normal(size=(12, 5)))
    one_class = distance_matrix(label_embedding([0] * 12, num_classes=3))
    value = _named_cause(jackknife_r2_star(x, one_class).as_value(), [("the student's fc features", x), ("the label", one_class)])
    assert value.reason == "undefined: the label is the same for every image (zero variance)"
    y = distance_matrix(RNG.normal(size=(12, 5)))
    defined = jackknife_r2_star(x, y).as_value()
    assert _named_cause(defined, [("a", x), ("b", y)]) is defined
