"""The engine's one value type: defaults, NaN with a reason, a jackknife interval as a Value, no torch."""
import math
import subprocess
import sys

import numpy as np

from kdx_engine.values import Value


def test_a_plain_value_has_no_interval_and_converts_to_float():
    value = Value(0.25)
    assert value.is_defined and not value.has_interval and value.reason is None
    assert float(value) == 0.25 and math.isnan(value.low) and math.isnan(value.high)


def test_undefined_is_nan_with_its_reason():
    value = Value.undefined("map a is constant")
    assert math.isnan(value.value) and not value.is_defined and value.reason == "map a is constant"


def test_every_public_name_is_the_same_class():
    from kdx_engine.cams import MetricValue
    from kdx_engine.metrics import Value as MetricsValue
    from kdx_engine.stats import Value as StatsValue

    assert MetricValue is MetricsValue is StatsValue is Value


def test_a_jackknife_interval_becomes_a_value_with_the_reason_its_interval_is_missing():
    from kdx_engine.stats import distance_matrix, interval_from_replicates, jackknife_r2_star

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3))
    interval = jackknife_r2_star(distance_matrix(x), distance_matrix(x + rng.standard_normal((20, 3))))
    value = interval.as_value()
    assert (value.value, value.low, value.high, value.reason) == (interval.value, interval.low, interval.high, None)
    assert value.has_interval
    lonely = interval_from_replicates(0.5, [0.4, math.nan, math.nan]).as_value()
    assert lonely.value == 0.5 and not lonely.has_interval
    assert lonely.reason == "interval undefined: 1 defined leave-one-out value(s) (2 undefined), at least 2 needed"
    assert interval_from_replicates(math.nan, []).as_value().reason == "undefined: a variance term is zero"


def test_the_module_needs_no_torch():
    code = "import sys, kdx_engine.values; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
