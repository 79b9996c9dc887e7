"""The whole model: the ELBO's gradient by finite differences, the bound itself by quadrature,
the estimator methods, bad input, seeding and memorisation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpyvae import network, ops
from numpyvae.gradcheck import check_model, randomize_biases
from numpyvae.model import VAE


def small_vae(decoder="bernoulli", activation="softplus", dtype="float64", **kw):
    kw.setdefault("backend", "numpy")
    vae = VAE(n_input=12, hidden=(7, 5), n_latent=3, activation=activation, decoder=decoder,
              dtype=dtype, seed=3, **kw)
    randomize_biases(vae, np.random.default_rng(11))  # every bias gradient exercised
    return vae


def data(decoder, n=4, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    return x if decoder == "gaussian" else (x < 0.5).astype(float) * 0.9 + 0.05


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["softplus", "relu", "tanh"])
def test_whole_elbo_gradient(decoder, activation):
    """(ELBO-2) (ELBO-3) every parameter's gradient of the batch -ELBO, noise fixed, float64."""
    vae = small_vae(decoder, activation)
    X = data(decoder)
    eps = np.random.default_rng(1).standard_normal((4, 3))
    report = check_model(vae, X, eps)
    assert report.passed, "\n" + report.table()
    assert len(report.rows) == len(vae.parameters())


def test_gradient_with_kl_weight():
    """(ELBO-2) with beta = 0.3 the KL path is scaled, and the check still passes."""
    vae = small_vae()
    eps = np.random.default_rng(2).standard_normal((4, 3))
    assert check_model(vae, data("bernoulli"), eps, beta=0.3).passed


def test_loss_is_batch_mean_of_recon_plus_kl():
    """(ELBO-2) loss per example = -log p(x|z) + KL; (ELBO-3) the batch loss is their mean."""
    vae = small_vae()
    X = data("bernoulli", n=5)
    eps = np.random.default_rng(3).standard_normal((5, 3))
    loss, _ = vae.loss_and_gradients(X, eps)
    recon, kl = vae.elbo_terms(X, eps)
    assert loss == pytest.approx(float(np.mean(recon + kl)), rel=1e-12)
    # the mean does not depend on how examples are grouped
    halves = [vae.loss_and_gradients(X[s], eps[s])[0] for s in (slice(0, 2), slice(2, 5))]
    assert loss == pytest.approx((2 * halves[0] + 3 * halves[1]) / 5, rel=1e-12)


def test_elbo_bounds_log_likelihood_by_quadrature():
    """(ELBO-1) with a 1-D latent, log p(x) and the exact ELBO by quadrature: ELBO <= log p(x)
    and the gap is KL(q(z|x) || p(z|x))."""
    vae = VAE(n_input=6, hidden=(5,), n_latent=1, dtype="float64", seed=7, backend="numpy")
    x = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    z = np.linspace(-12, 12, 24001)[:, None]
    outputs, _ = network.decode(vae.params, vae.layout, z)
    log_px_z = -ops.bce_with_logits_forward(outputs[0], np.repeat(x, len(z), 0))[0]
    log_prior = -0.5 * (math.log(2 * math.pi) + z[:, 0] ** 2)
    log_joint = log_px_z + log_prior
    log_px = math.log(np.trapezoid(np.exp(log_joint), z[:, 0]))
    mu, logvar = (a[0, 0] for a in vae.encode(x))
    sd = math.exp(logvar / 2)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + (z[:, 0] - mu) ** 2 / sd**2)
    q = np.exp(log_q)
    kl = ops.kl_standard_normal_forward(np.array([[mu]]), np.array([[logvar]]))[0][0]
    elbo = np.trapezoid(q * log_px_z, z[:, 0]) - kl
    gap = np.trapezoid(q * (log_q - (log_joint - log_px)), z[:, 0])
    assert elbo < log_px
    assert log_px - elbo == pytest.approx(gap, rel=1e-6)
    # and the model's Monte Carlo score estimates the same ELBO
    X = np.repeat(x, 20000, axis=0)
    assert vae.score(X) == pytest.approx(elbo, abs=0.02)


def test_parameters_in_forward_order_and_writable():
    vae = small_vae(decoder="gaussian")
    params = vae.parameters()
    assert list(params) == [
        f"{layer}.{k}" for layer in ("enc.h1", "enc.h2", "enc.mu", "enc.logvar", "dec.h1",
                                     "dec.h2", "dec.mu", "dec.logvar") for k in ("W", "b")]
    assert params["enc.h1.W"].shape == (12, 7) and params["enc.h1.b"].shape == (7,)
    assert params["dec.h1.W"].shape == (3, 5) and params["dec.mu.W"].shape == (7, 12)
    params["enc.mu.b"][...] = 42.0
    assert np.count_nonzero(vae.params.flat == 42.0) == 3  # the view writes the flat buffer


def test_initialisation_is_xavier_with_zero_biases():
    """(INIT-1) the seed's initialisation: weights within +-sqrt(6/(fan_in+fan_out)), biases 0."""
    vae = VAE(seed=0, backend="numpy")
    for name, p in vae.parameters().items():
        if name.endswith(".b"):
            assert not p.any(), name
        else:
            assert np.abs(p).max() <= math.sqrt(6 / sum(p.shape)), name
            assert p.dtype == np.float32


def test_he_initialisation_option():
    """(INIT-2) init="he" draws every weight within +-sqrt(6/fan_in); a bad name is refused."""
    vae = VAE(hidden=(50,), n_latent=4, init="he", activation="relu", seed=0)
    for name, p in vae.parameters().items():
        if name.endswith(".W"):
            assert np.abs(p).max() <= math.sqrt(6 / p.shape[0]), name
            assert np.abs(p).max() > math.sqrt(6 / sum(p.shape)), name  # wider than Xavier
    with pytest.raises(ValueError, match="init='lecun' is not supported"):
        VAE(init="lecun")


def test_same_seed_same_model_and_losses():
    X = data("bernoulli", n=8).astype(np.float32)
    a, b, c = (VAE(n_input=12, hidden=(6,), n_latent=2, seed=s, backend="numpy")
               for s in (5, 5, 6))
    la = [a.partial_fit(X) for _ in range(3)]
    lb = [b.partial_fit(X) for _ in range(3)]
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    assert la == lb
    assert not np.array_equal(a.params.flat, c.params.flat)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), decoder=st.sampled_from(["bernoulli", "gaussian"]),
       layers=st.lists(st.integers(1, 6), max_size=3))
def test_shapes_for_any_batch_size(n, decoder, layers):
    """Batch sizes from 1, any number of hidden layers (even none): every method's shapes."""
    vae = VAE(n_input=5, hidden=tuple(layers), n_latent=2, decoder=decoder, seed=0,
              backend="numpy")
    X = np.random.default_rng(n).random((n, 5)).astype(np.float32)
    loss = vae.partial_fit(X)
    assert isinstance(loss, float) and math.isfinite(loss)
    assert vae.transform(X).shape == (n, 2)
    assert vae.reconstruct(X).shape == (n, 5)
    assert vae.generate(n=n).shape == (n, 5)
    assert vae.generate(np.zeros(2)).shape == (1, 5)
    assert math.isfinite(vae.score(X))
    assert vae.params.flat.dtype == np.float32  # no silent float64 promotion


def test_generate_and_reconstruct_are_decoder_means():
    vae = small_vae()
    X = data("bernoulli")
    out = vae.reconstruct(X)
    assert np.all((out > 0) & (out < 1))
    np.testing.assert_allclose(out, vae.generate(vae.transform(X)))
    assert not np.allclose(vae.reconstruct(X, sample=True), out)


def test_overfits_a_tiny_set():
    """Memorisation: 16 random binary patterns of 64 pixels. The -ELBO falls from ~54 nats by
    at least 5x in 1500 Adam steps (measured: 54.3 -> 9.0), and the reconstruction gets >= 95%
    of the pixels right."""
    rng = np.random.default_rng(0)
    X = (rng.random((16, 64)) < 0.5).astype(np.float32)
    vae = VAE(n_input=64, hidden=(64,), n_latent=4, seed=0, learning_rate=3e-3,
              backend="numpy")
    first = vae.partial_fit(X)
    for _ in range(1500):
        last = vae.partial_fit(X)
    assert first > 50 and last < first / 5
    assert np.mean((vae.reconstruct(X) > 0.5) == (X > 0.5)) >= 0.95


def test_fit_records_history():
    X = data("bernoulli", n=30).astype(np.float32)
    vae = VAE(n_input=12, hidden=(8,), n_latent=2, seed=0, backend="numpy")
    vae.fit(X, epochs=3, batch_size=7)
    assert len(vae.history_) == 3 and vae.history_[-1] < vae.history_[0]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((2, 11)), r"shape \(2, 11\); expected \(n_examples, 12\)"),
        (np.full((2, 12), np.nan), "NaN or inf"),
        (np.full((2, 12), np.inf), "NaN or inf"),
        (np.full((2, 12), 2.0), r"Bernoulli decoder needs pixels in \[0, 1\]"),
        (np.full((2, 12), -0.5), r"Bernoulli decoder needs pixels in \[0, 1\]"),
        (np.zeros((0, 12)), "no rows"),
        (np.zeros((2, 12), np.uint8), "uint8"),
    ],
)
def test_bad_input_is_refused(X, message):
    vae = small_vae(dtype="float32")
    before = vae.params.flat.copy()
    with pytest.raises(ValueError, match=message):
        vae.partial_fit(X)
    np.testing.assert_array_equal(vae.params.flat, before)  # nothing trained on garbage


def test_gaussian_decoder_accepts_real_values():
    vae = small_vae(decoder="gaussian", dtype="float32")
    assert math.isfinite(vae.partial_fit(np.full((2, 12), 3.5)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"learning_rate": -1e-3}, "learning_rate must be positive"),
        ({"hidden": (500, 0)}, "every layer needs at least one unit"),
        ({"n_latent": 0}, "n_latent must be a positive width"),
        ({"activation": "gelu"}, "activation='gelu' is not supported"),
        ({"decoder": "poisson"}, "decoder='poisson' is not supported"),
        ({"dtype": "float16"}, "dtype='float16' is not supported"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)


def test_bad_noise_and_latent_shapes():
    vae = small_vae()
    with pytest.raises(ValueError, match="eps has shape"):
        vae.loss_and_gradients(data("bernoulli"), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"z has shape \(2, 2\); expected \(n, 3\)"):
        vae.generate(np.zeros((2, 2)))


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numerical_edges_stay_finite(decoder, dtype):
    """(BER-2) (GAU-1) (KL-1) (REP-1) logits of +-1e4, latent logvar of +-50, decoder logvar of
    +-50, all-zero and all-one images: the loss and every gradient stay finite."""
    vae = small_vae(decoder, dtype=dtype)
    eps = np.random.default_rng(0).standard_normal((2, 3))
    heads = ["dec.out.b"] if decoder == "bernoulli" else ["dec.mu.b", "dec.logvar.b"]
    if decoder == "gaussian":
        # output weights 0 so the decoder's log-variance is exactly +-50; otherwise sigma_z =
        # e^25 drives it to ~1e11, whose exp no float holds (a true infinity, not instability)
        vae.params["dec.mu.W"][...] = 0.0
        vae.params["dec.logvar.W"][...] = 0.0
    for latent_logvar in (-50.0, 50.0):
        for out_bias in (-1e4, 1e4) if decoder == "bernoulli" else (-50.0, 50.0):
            vae.params["enc.logvar.b"][...] = latent_logvar
            for head in heads:
                vae.params[head][...] = out_bias
            for X in (np.zeros((2, 12)), np.ones((2, 12))):
                loss, grads = vae.loss_and_gradients(X, eps)
                assert math.isfinite(loss), (latent_logvar, out_bias)
                assert all(np.isfinite(g).all() for g in grads.values()), (latent_logvar, out_bias)


def test_error_types_subclass_builtins():
    from numpyvae.errors import CheckpointError, DataFileError, DataNotFoundError, DivergenceError

    for err in (CheckpointError, DataFileError, DivergenceError):
        assert issubclass(err, ValueError)
    assert issubclass(DataNotFoundError, OSError)


def test_a_config_builds_the_same_model():
    """VAE(cfg) is VAE.from_config(cfg); other arguments next to a config are refused."""
    import dataclasses

    from numpyvae.model import VAEConfig

    cfg = VAEConfig(n_input=12, hidden=(6,), n_latent=3, seed=7)
    a, b = VAE(cfg), VAE.from_config(cfg)
    assert a.config == cfg
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    with pytest.raises(TypeError, match="dataclasses.replace"):
        VAE(cfg, n_latent=5)
    with pytest.raises(TypeError, match="learning_rate"):
        VAE(cfg, learning_rate=0.1)
    assert VAE(dataclasses.replace(cfg, n_latent=5)).n_latent == 5


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_trains_like_the_original(backend, how):
    """copy.deepcopy / pickle of a model in training: the copy's named views still alias its
    own flat buffer (not the original's, not a dead copy), and a step on both gives bitwise
    the same parameters, so a snapshot such as "the best model so far" is a real model."""
    import copy
    import pickle

    vae = VAE(n_input=16, hidden=(8,), n_latent=2, backend=backend, seed=1)
    X = (np.random.default_rng(0).random((10, 16)) < 0.3).astype(np.float32)
    vae.step(X)  # builds the fused engine and its buffers on the numba backend
    twin = copy.deepcopy(vae) if how == "deepcopy" else pickle.loads(pickle.dumps(vae))
    for p in (twin.params, twin.grads):
        for view in p.views.values():
            assert np.shares_memory(view, p.flat)
    assert not np.shares_memory(twin.params.flat, vae.params.flat)
    vae.step(X)
    twin.step(X)
    np.testing.assert_array_equal(twin.params.flat, vae.params.flat)
    np.testing.assert_array_equal(twin.optimizer.m, vae.optimizer.m)
