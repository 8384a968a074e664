"""Student's t quantiles for real degrees of freedom: the closed forms for ν = 1 and 2, scipy's values."""
import math

import pytest

from kdx_engine.stats.student_t import student_t_quantile


def test_student_t_quantile_equals_closed_forms():
    for p in (0.6, 0.9, 0.975, 0.995):
        assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
        assert student_t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert student_t_quantile(0.975, 63) == pytest.approx(1.998340542520741, rel=1e-9)  # scipy.stats.t.ppf
    assert student_t_quantile(0.975, 16.3) == pytest.approx(2.116738726070623, rel=1e-9)
    assert student_t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, rel=1e-12)
