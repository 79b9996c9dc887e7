"""Each reference op: its value against the textbook formula, its backward against finite
differences (float64, max relative error <= 1e-6), and its behaviour at extreme inputs."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from numpyvae import ops
from numpyvae.gradcheck import check_gradients

TOL = 1e-6


def check_op(forward, backward, inputs: dict, rng, grad_names=None):
    """Finite-difference check of backward against f = sum(forward(inputs) * dout).

    ``grad_names`` maps the backward's return values, in order, to input names (None = skip).
    """
    out, cache = forward(*inputs.values())
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    names = grad_names or list(inputs)
    analytic = {n: g for n, g in zip(names, grads, strict=True) if n is not None}

    def f():
        return float(np.sum(forward(*inputs.values())[0] * dout))

    report = check_gradients(f, {n: inputs[n] for n in analytic}, analytic)
    assert report.passed, "\n" + report.table()
    return report


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- dense
def test_dense_forward_is_affine(rng):
    """(DENSE-1) y_nk = sum_i x_ni W_ik + b_k, written out as loops."""
    x, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    y, _ = ops.dense_forward(x, W, b)
    loops = [[sum(x[n, i] * W[i, k] for i in range(4)) + b[k] for k in range(2)] for n in range(3)]
    np.testing.assert_allclose(y, loops, rtol=1e-12)


def test_dense_backward(rng):
    """(DENSE-2) dW = x^T dy, (DENSE-3) db = column sums of dy, (DENSE-4) dx = dy W^T."""
    inputs = {"x": rng.standard_normal((5, 4)), "W": rng.standard_normal((4, 3)),
              "b": rng.standard_normal(3)}
    check_op(ops.dense_forward, ops.dense_backward, inputs, rng)


def test_dense_first_layer_skips_input_gradient(rng):
    """(DENSE-4) is not computed for the data: need_dx=False returns None for dx."""
    _, cache = ops.dense_forward(rng.standard_normal((2, 3)), rng.standard_normal((3, 2)),
                                 np.zeros(2))
    dx, dW, db = ops.dense_backward(np.ones((2, 2)), cache, need_dx=False)
    assert dx is None and dW.shape == (3, 2) and db.shape == (2,)


# ---------------------------------------------------------------- activations
def test_softplus_value_and_stability():
    """(ACT-1) softplus = log(1 + e^a), finite and exact at |a| = 1e4 in float32 and float64."""
    a = np.linspace(-20, 20, 41)
    np.testing.assert_allclose(ops.softplus(a), np.log1p(np.exp(a)), rtol=1e-12)
    for dtype in (np.float32, np.float64):
        big = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
        out = ops.softplus(big)
        assert out.dtype == dtype and np.all(np.isfinite(out))
        assert out[-1] == dtype(1e4) and out[0] == 0.0 and out[2] == dtype(math.log(2))


def test_softplus_backward(rng):
    """(ACT-2) softplus'(a) = sigma(a)."""
    check_op(ops.softplus_forward, ops.softplus_backward, {"a": rng.standard_normal((4, 6)) * 3},
             rng)


def test_sigmoid_value_and_stability():
    """(ACT-3) sigma(a) = 1/(1+e^-a), evaluated without overflow at |a| = 1e4."""
    a = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(ops.sigmoid(a), 1 / (1 + np.exp(-a)), rtol=1e-12)
    with np.errstate(over="raise"):
        out = ops.sigmoid(np.array([-1e4, 1e4], dtype=np.float32))
    assert out[0] == 0.0 and out[1] == 1.0


def test_sigmoid_backward(rng):
    """(ACT-4) sigma' = sigma (1 - sigma)."""
    check_op(ops.sigmoid_forward, ops.sigmoid_backward, {"a": rng.standard_normal((4, 6)) * 3},
             rng)


def test_tanh_backward(rng):
    """(ACT-5) tanh' = 1 - tanh^2."""
    check_op(ops.tanh_forward, ops.tanh_backward, {"a": rng.standard_normal((4, 6)) * 2}, rng)


def test_relu_forward_backward(rng):
    """(ACT-6) relu = max(a, 0), relu' = 1[a > 0]; inputs kept away from the kink at 0."""
    a = rng.standard_normal((4, 6))
    a += np.sign(a) * 0.1
    np.testing.assert_array_equal(ops.relu_forward(a)[0], np.where(a > 0, a, 0))
    check_op(ops.relu_forward, ops.relu_backward, {"a": a}, rng)


# ---------------------------------------------------------------- Bernoulli NLL
def test_bce_matches_textbook_formula(rng):
    """(BER-1) equals (BER-2): -sum[x log p + (1-x) log(1-p)] = sum[softplus(a) - x a]."""
    a = rng.standard_normal((3, 10)) * 4
    x = rng.random((3, 10))
    p = 1 / (1 + np.exp(-a))
    textbook = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
    loss, _ = ops.bce_with_logits_forward(a, x)
    np.testing.assert_allclose(loss, textbook, rtol=1e-10)


def test_bce_backward(rng):
    """(BER-3) dloss/da = sigma(a) - x, scaled per example by the upstream gradient."""
    a = rng.standard_normal((3, 10)) * 4
    x = rng.random((3, 10))
    check_op(ops.bce_with_logits_forward, ops.bce_with_logits_backward, {"a": a, "x": x}, rng,
             grad_names=["a"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_extreme_logits(dtype):
    """(BER-2) (BER-3) at logits of +-1e4: exact losses, finite gradients, no overflow."""
    a = np.array([[1e4, -1e4, 1e4, -1e4]], dtype=dtype)
    x = np.array([[1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, cache = ops.bce_with_logits_forward(a, x)
        da = ops.bce_with_logits_backward(np.ones(1, dtype), cache)
    assert loss.dtype == dtype and loss[0] == dtype(2e4)  # two confident mistakes, 1e4 nats each
    np.testing.assert_array_equal(da, [[0.0, 0.0, 1.0, -1.0]])


# ---------------------------------------------------------------- Gaussian NLL
def test_gaussian_nll_matches_density(rng):
    """(GAU-1) equals -log of the normal density written out."""
    x, m = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    s = rng.standard_normal((2, 5))
    var = np.exp(s)
    dens = np.exp(-((x - m) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
    np.testing.assert_allclose(ops.gaussian_nll_forward(x, m, s)[0], -np.log(dens).sum(1),
                               rtol=1e-12)


def test_gaussian_nll_backward(rng):
    """(GAU-2) d/dmean = (mean - x)/var, (GAU-3) d/dlogvar = (1 - (x-mean)^2/var)/2."""
    inputs = {"x": rng.standard_normal((3, 5)), "mean": rng.standard_normal((3, 5)),
              "logvar": rng.standard_normal((3, 5))}
    check_op(ops.gaussian_nll_forward, ops.gaussian_nll_backward, inputs, rng,
             grad_names=["mean", "logvar"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_nll_extreme_logvar(dtype):
    """(GAU-1) (GAU-2) (GAU-3) stay finite at logvar = +-50."""
    x = np.array([[0.0, 1.0, 0.5]], dtype)
    m = np.array([[0.5, 0.5, 0.5]], dtype)
    s = np.array([[-50.0, 50.0, -50.0]], dtype)
    loss, cache = ops.gaussian_nll_forward(x, m, s)
    grads = ops.gaussian_nll_backward(np.ones(1, dtype), cache)
    assert np.isfinite(loss).all() and all(np.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------- reparameterisation
def test_reparameterize_uses_standard_deviation():
    """(REP-1) z = mu + exp(logvar/2) eps: with variance 4 and eps = 1, z = mu + 2 (not + 4)."""
    z, _ = ops.reparameterize_forward(np.array([[1.0]]), np.array([[math.log(4.0)]]),
                                      np.array([[1.0]]))
    assert z[0, 0] == pytest.approx(3.0, rel=1e-15)


def test_reparameterize_backward(rng):
    """(REP-2) dmu = dz, (REP-3) dlogvar = dz * exp(logvar/2) * eps / 2."""
    inputs = {"mu": rng.standard_normal((4, 3)), "logvar": rng.standard_normal((4, 3)),
              "eps": rng.standard_normal((4, 3))}
    check_op(ops.reparameterize_forward, ops.reparameterize_backward, inputs, rng,
             grad_names=["mu", "logvar"])


def test_reparameterized_samples_have_the_posterior_moments(rng):
    """(REP-1) z has mean mu and variance exp(logvar) (Monte Carlo, 200k draws, 4 sigma)."""
    mu, logvar = np.array([[0.7, -1.5]]), np.array([[math.log(0.25), math.log(9.0)]])
    eps = rng.standard_normal((200_000, 2))
    z, _ = ops.reparameterize_forward(mu, logvar, eps)
    np.testing.assert_allclose(z.mean(0), mu[0], atol=4 * 3 / math.sqrt(200_000))
    np.testing.assert_allclose(z.var(0), np.exp(logvar[0]), rtol=0.02)


# ---------------------------------------------------------------- KL
def test_kl_matches_numerical_integral():
    """(KL-1) closed form equals integral of q log(q/p) computed by quadrature (one unit)."""
    for mu, s in [(0.0, 0.0), (1.3, -0.7), (-2.0, 1.1)]:
        sd = math.exp(s / 2)
        z = np.linspace(mu - 12 * sd, mu + 12 * sd, 200_001)
        logq = -0.5 * np.log(2 * np.pi * sd**2) - (z - mu) ** 2 / (2 * sd**2)
        logp = -0.5 * np.log(2 * np.pi) - z**2 / 2
        integral = np.trapezoid(np.exp(logq) * (logq - logp), z)
        kl, _ = ops.kl_standard_normal_forward(np.array([[mu]]), np.array([[s]]))
        assert kl[0] == pytest.approx(integral, abs=1e-8)


def test_kl_backward(rng):
    """(KL-2) dKL/dmu = mu, (KL-3) dKL/dlogvar = (e^logvar - 1)/2."""
    inputs = {"mu": rng.standard_normal((4, 3)), "logvar": rng.standard_normal((4, 3))}
    out, cache = ops.kl_standard_normal_forward(*inputs.values())
    dmu, dlv = ops.kl_standard_normal_backward(np.ones(4), cache)
    np.testing.assert_allclose(dmu, inputs["mu"], rtol=1e-15)
    np.testing.assert_allclose(dlv, 0.5 * (np.exp(inputs["logvar"]) - 1), rtol=1e-12)
    check_op(ops.kl_standard_normal_forward, ops.kl_standard_normal_backward, inputs, rng)


finite = st.floats(-20, 20, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(mu=arrays(np.float64, (3, 4), elements=finite),
       logvar=arrays(np.float64, (3, 4), elements=finite))
def test_kl_nonnegative_and_zero_only_at_standard_normal(mu, logvar):
    """(KL-1) KL >= 0; KL = 0 exactly at mu = 0, logvar = 0, and > 0 for any unit away from it."""
    kl, _ = ops.kl_standard_normal_forward(mu, logvar)
    assert np.all(kl >= 0)
    # mu^2 + expm1(s) - s is > 0 in float64 once |mu| or |s| exceeds ~1e-7 (s^2/2 above rounding)
    away = (np.abs(mu) > 1e-7) | (np.abs(logvar) > 1e-7)
    assert np.all(kl[away.any(axis=1)] > 0)
    kl0, _ = ops.kl_standard_normal_forward(np.zeros_like(mu), np.zeros_like(logvar))
    assert np.all(kl0 == 0)


@settings(max_examples=100, deadline=None)
@given(a=arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 8)),
                elements=st.floats(-1e4, 1e4, width=32)),
       x=st.sampled_from([0.0, 1.0, 0.5]))
def test_bce_stable_for_any_logit(a, x):
    """(BER-2) (BER-3) loss finite and >= 0, gradient in [-1, 1], for float32 logits in +-1e4."""
    target = np.full_like(a, x)
    loss, cache = ops.bce_with_logits_forward(a, target)
    da = ops.bce_with_logits_backward(np.ones(a.shape[0], np.float32), cache)
    assert loss.shape == (a.shape[0],) and np.all(np.isfinite(loss)) and np.all(loss >= 0)
    assert np.all(np.abs(da) <= 1)


# ---------------------------------------------------------------- init
def test_xavier_uniform(rng):
    """(INIT-1) W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out)): bounds, variance, seeding."""
    W = ops.xavier_uniform(300, 200, rng)
    r = math.sqrt(6 / 500)
    assert W.dtype == np.float32 and W.shape == (300, 200)
    assert np.abs(W).max() <= r and np.abs(W).max() > 0.99 * r
    assert W.var() == pytest.approx(r * r / 3, rel=0.02)  # = 2 / (fan_in + fan_out)
    a = ops.xavier_uniform(3, 2, np.random.default_rng(5))
    b = ops.xavier_uniform(3, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_he_uniform(rng):
    """(INIT-2) W ~ U(-r, r), r = sqrt(6 / fan_in): bounds and variance 2 / fan_in."""
    W = ops.he_uniform(300, 200, rng)
    r = math.sqrt(6 / 300)
    assert np.abs(W).max() <= r and np.abs(W).max() > 0.99 * r
    assert W.var() == pytest.approx(2 / 300, rel=0.02)
    a = ops.xavier_uniform(3, 2, np.random.default_rng(5))
    b = ops.xavier_uniform(3, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_and_reparameterisation_at_extreme_logvar(dtype):
    """(KL-1) (KL-2) (KL-3) (REP-1) (REP-3) finite values and gradients at logvar = +-50."""
    mu = np.array([[0.0, 3.0]], dtype)
    logvar = np.array([[-50.0, 50.0]], dtype)
    eps = np.array([[1.0, -1.0]], dtype)
    kl, kcache = ops.kl_standard_normal_forward(mu, logvar)
    z, rcache = ops.reparameterize_forward(mu, logvar, eps)
    grads = ops.kl_standard_normal_backward(np.ones(1, dtype), kcache)
    grads += ops.reparameterize_backward(np.ones_like(z), rcache)
    assert kl.dtype == dtype and np.isfinite(kl).all() and np.isfinite(z).all()
    assert all(np.isfinite(g).all() for g in grads)
