"""The importance-weighted bound: exact pieces, L_1 = ELBO, L_k rising towards log p(x)."""

import math

import numpy as np
import pytest

from numpyvae import network, ops
from numpyvae.evaluate import (
    evaluate,
    importance_weighted_bound,
    log_mean_exp,
    log_normal_diag,
)
from numpyvae.model import VAE


def test_log_mean_exp_is_stable():
    """(IWAE-2) equals log(mean(exp(a))) where that is finite, and survives a = +-1e4."""
    a = np.array([[0.1, -2.0], [1.5, 0.3], [-0.7, 0.9]])
    np.testing.assert_allclose(log_mean_exp(a, axis=0), np.log(np.mean(np.exp(a), axis=0)))
    big = np.array([1e4, 1e4 - math.log(3.0)])
    assert log_mean_exp(big) == pytest.approx(1e4 + math.log((1 + 1 / 3) / 2), abs=1e-9)
    assert log_mean_exp(-big) == pytest.approx(-1e4 + math.log((1 + 3) / 2), abs=1e-9)


def test_log_normal_diag_matches_density():
    """(IWAE-3) the diagonal Gaussian log-density written out per unit."""
    rng = np.random.default_rng(0)
    z, mu, lv = rng.standard_normal((3, 4, 2))
    dens = np.exp(-((z - mu) ** 2) / (2 * np.exp(lv))) / np.sqrt(2 * np.pi * np.exp(lv))
    np.testing.assert_allclose(log_normal_diag(z, mu, lv), np.log(dens).sum(-1), rtol=1e-12)


def tiny_vae():
    """A 1-D latent model whose q(z|x) has unit variance: at least as wide as the posterior,
    so the importance weights have finite variance (a narrow, off-centre q, as an untrained
    encoder gives, makes L_k converge very slowly — the test would measure that, not the code)."""
    vae = VAE(n_input=6, hidden=(5,), n_latent=1, dtype="float64", seed=7, backend="numpy")
    vae.params["enc.logvar.W"][...] = 0.0
    return vae


def test_k1_log_weight_with_the_same_noise():
    """(IWAE-1) (IWAE-3) with k = 1, L_1 = log p(x|z) + log p(z) - log q(z|x) for the drawn z,
    where z = mu + sigma*eps makes log p(z) - log q(z|x) = -z^2/2 + (logvar + eps^2)/2."""
    vae = tiny_vae()
    X = np.random.default_rng(1).integers(0, 2, (50, 6)).astype(float)
    lk = importance_weighted_bound(vae, X, 1, np.random.default_rng(5))
    eps = np.random.default_rng(5).standard_normal((1, 50, 1))[0]
    recon, _ = vae.elbo_terms(X, eps)
    mu, logvar = vae.encode(X)
    z = mu + np.exp(logvar / 2) * eps
    expect = -recon + (-0.5 * z**2 + 0.5 * (logvar + eps**2)).sum(1)
    np.testing.assert_allclose(lk, expect, rtol=1e-10)


def test_bound_rises_with_k_towards_log_likelihood():
    """(IWAE-1) L_1 < L_10 < L_1000 <= log p(x), and L_1000 is within 0.01 nats of log p(x)
    computed by quadrature over the 1-D latent. q = N(0, e) is wider than the posterior, so
    the weights are bounded; measured: L_1 -5.22, L_10 -4.69, L_1000 -4.669, log p(x) -4.669."""
    vae = tiny_vae()
    vae.params["enc.mu.W"][...] = 0.0
    vae.params["enc.logvar.b"][...] = 1.0
    x = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    z = np.linspace(-12, 12, 24001)[:, None]
    outputs, _ = network.decode(vae.params, vae.layout, z)
    log_joint = (-ops.bce_with_logits_forward(outputs[0], np.repeat(x, len(z), 0))[0]
                 - 0.5 * (math.log(2 * math.pi) + z[:, 0] ** 2))
    log_px = math.log(np.trapezoid(np.exp(log_joint), z[:, 0]))
    bounds = [np.mean(importance_weighted_bound(vae, np.repeat(x, n, 0), k,
                                                np.random.default_rng(k)))
              for k, n in ((1, 2000), (10, 4000), (1000, 200))]
    assert bounds[0] < bounds[1] < bounds[2] <= log_px + 0.005
    assert bounds[2] == pytest.approx(log_px, abs=0.01)


def test_blocking_does_not_change_the_result():
    """(IWAE-2) the running log-sum-exp over blocks equals one log-mean-exp over all k."""
    vae = tiny_vae()
    vae.params["enc.mu.W"][...] = 0.0  # q = prior: small Monte Carlo spread
    X = np.random.default_rng(2).integers(0, 2, (7, 6)).astype(float)
    small = importance_weighted_bound(vae, X, 3000, np.random.default_rng(3), max_rows=100)
    big = importance_weighted_bound(vae, X, 3000, np.random.default_rng(4), max_rows=10**6)
    assert small.shape == (7,) and np.all(np.isfinite(small))
    np.testing.assert_allclose(small, big, atol=0.05)


def test_evaluate_reports_nats_per_example():
    vae = tiny_vae()
    X = np.random.default_rng(2).integers(0, 2, (30, 6)).astype(float)
    res = evaluate(vae, X, k=50, n_samples=4, rng=np.random.default_rng(0))
    assert res["neg_elbo"] == pytest.approx(res["recon"] + res["kl"])
    assert res["neg_log_likelihood_iw"] <= res["neg_elbo"] + 0.05
    with pytest.raises(ValueError, match="k must be >= 1"):
        importance_weighted_bound(vae, X, 0, np.random.default_rng(0))
