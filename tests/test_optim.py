"""Adam and SGD against textbook scalar implementations, in place on flat buffers."""

import math

import numpy as np
import pytest

from numpyvae.optim import SGD, Adam


def textbook_adam(theta, grads, lr, b1, b2, eps):
    """Kingma & Ba's Algorithm 1, one scalar at a time."""
    theta = list(theta)
    m = [0.0] * len(theta)
    v = [0.0] * len(theta)
    for t, g in enumerate(grads, start=1):
        for i in range(len(theta)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            theta[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return np.array(theta), np.array(m), np.array(v)


def test_adam_matches_algorithm_1():
    """(ADAM-1) (ADAM-2) (ADAM-3) (ADAM-4) equal the textbook update over 7 steps."""
    rng = np.random.default_rng(0)
    theta0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) * 10**k for k in range(-3, 4)]
    opt = Adam(6, "float64", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)
    theta = theta0.copy()
    for g in grads:
        opt.step(theta, g)
    expect, m, v = textbook_adam(theta0, grads, 0.01, 0.8, 0.99, 1e-6)
    np.testing.assert_allclose(theta, expect, rtol=1e-12)
    np.testing.assert_allclose(opt.m, m, rtol=1e-12)
    np.testing.assert_allclose(opt.v, v, rtol=1e-12)
    assert opt.t == 7


def test_adam_first_step_is_lr_times_sign():
    """(ADAM-3) bias correction: the first step moves each weight by ~lr, whatever |g|."""
    opt = Adam(3, "float64", lr=1e-3)
    theta = np.zeros(3)
    opt.step(theta, np.array([1e-4, -5.0, 300.0]))
    np.testing.assert_allclose(theta, [-1e-3, 1e-3, -1e-3], rtol=1e-3)


def test_sgd_step():
    """(SGD-1) theta <- theta - lr * g."""
    opt = SGD(lr=0.5)
    theta = np.array([1.0, 2.0, 3.0])
    opt.step(theta, np.array([2.0, 0.0, -2.0]))
    np.testing.assert_array_equal(theta, [0.0, 2.0, 4.0])


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimisers_minimise_a_quadratic(name):
    """(ADAM-4) (SGD-1) both reach the minimum of sum((theta - 3)^2), in float32 in place."""
    opt = Adam(4, np.float32, lr=0.05) if name == "adam" else SGD(lr=0.05)
    theta = np.zeros(4, np.float32)
    buf = theta
    for _ in range(2000):
        opt.step(theta, 2 * (theta - 3))
    assert theta is buf and theta.dtype == np.float32
    np.testing.assert_allclose(theta, 3.0, atol=1e-2)


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="learning rate must be a positive"):
        Adam(3, lr=lr)
    with pytest.raises(ValueError, match="learning rate"):
        SGD(lr=lr)


def test_bad_betas_and_unknown_optimizer():
    from numpyvae import VAEConfig

    with pytest.raises(ValueError, match="beta1"):
        Adam(3, beta1=1.0)
    with pytest.raises(ValueError, match="optimizer='rmsprop' is not supported"):
        VAEConfig(optimizer="rmsprop")


def test_adam_state_round_trip():
    """(ADAM-1) (ADAM-2) restoring t, m and v continues the same trajectory."""
    rng = np.random.default_rng(1)
    a, b = Adam(5, "float64"), Adam(5, "float64")
    ta, tb = np.zeros(5), np.zeros(5)
    for _ in range(3):
        a.step(ta, rng.standard_normal(5))
    b.load_state({k: np.array(v) for k, v in a.state().items()})
    tb[...] = ta
    g = rng.standard_normal(5)
    a.step(ta, g)
    b.step(tb, g)
    np.testing.assert_array_equal(ta, tb)
