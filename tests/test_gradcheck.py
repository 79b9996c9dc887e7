"""The gradient checker itself: it must pass right gradients and catch wrong ones."""

import numpy as np
import pytest

from numpyvae import ops
from numpyvae.gradcheck import check_gradients, numerical_gradient, relative_error


def test_numerical_gradient_of_a_cubic_restores_input():
    x = np.array([1.0, -2.0, 0.5])
    before = x.copy()
    g = numerical_gradient(lambda: float((x**3).sum()), x)
    np.testing.assert_allclose(g, 3 * before**2, rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_catches_variance_used_as_standard_deviation():
    """(REP-1) (REP-3) the numpy-ml bug: a sampler using the variance; the check must fail."""
    rng = np.random.default_rng(0)
    mu, logvar, eps = (rng.standard_normal((3, 2)) for _ in range(3))
    dz = rng.standard_normal((3, 2))

    def right():
        return float((ops.reparameterize_forward(mu, logvar, eps)[0] * dz).sum())

    _, cache = ops.reparameterize_forward(mu, logvar, eps)
    _, dlogvar = ops.reparameterize_backward(dz, cache)
    assert check_gradients(right, {"logvar": logvar}, {"logvar": dlogvar}).passed

    def buggy():  # z = mu + exp(logvar) * eps: variance, not standard deviation
        return float(((mu + np.exp(logvar) * eps) * dz).sum())

    report = check_gradients(buggy, {"logvar": logvar}, {"logvar": dlogvar})
    assert not report.passed and report.max_rel_error > 1e-2
    assert "FAIL" in report.table()


def test_relative_error_definition():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)


def test_subsampled_check_and_float32_refusal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50)
    report = check_gradients(lambda: float((x**2).sum()), {"x": x}, {"x": 2 * x},
                             max_entries=10, rng=rng)
    assert report.passed and report["x"].n_checked == 10
    with pytest.raises(ValueError, match="float64"):
        check_gradients(lambda: 0.0, {"x": x.astype(np.float32)}, {"x": x})
