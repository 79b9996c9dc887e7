"""Training on k samples (derivations/iwae_training.md): the k-sample ELBO (ELBO-4) and the IWAE
objective -L_k (IWAE-1), by hand in both engines, checked by finite differences in float64."""

import math
import re
import tracemalloc

import numpy as np
import pytest

from numpyvae import ops
from numpyvae.config import TrainConfig, VAEConfig
from numpyvae.evaluate import active_units, log_mean_exp, log_normal_diag
from numpyvae.gradcheck import check_gradients, check_model, numerical_gradient, randomize_biases
from numpyvae.model import VAE
from numpyvae.schedules import BURDA_PASSES, burda_phase, learning_rate
from numpyvae.training import CHECKPOINT, Trainer

BACKENDS = ["numpy", "numba"]
DECODERS = ["bernoulli", "gaussian"]


def small_vae(decoder="bernoulli", backend="numpy", objective="iwae", k=2, dtype="float64",
              **kw):
    vae = VAE(n_input=12, hidden=(7, 5), n_latent=3, activation="tanh", decoder=decoder,
              dtype=dtype, backend=backend, objective=objective, k=k, seed=1, **kw)
    randomize_biases(vae, np.random.default_rng(11))
    return vae


def data(decoder, n=4, d=12, seed=0):
    x = np.random.default_rng(seed).random((n, d))
    return x if decoder == "gaussian" else (x < 0.5) * 0.9 + 0.05


def noise(k, n=4, J=3, seed=1):
    return np.random.default_rng(seed).standard_normal((k, n, J))


# --------------------------------------------------------------------------- whole objectives
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("k", [1, 2, 7])
def test_whole_iwae_gradient(backend, decoder, k):
    """(IWAE-1) (IWAE-5) (IWAE-6): every parameter's gradient of the batch mean of -L_k, noise
    fixed, float64, against central differences."""
    vae = small_vae(decoder, backend, "iwae", k)
    report = check_model(vae, data(decoder), noise(k))
    assert report.passed, "\n" + report.table()
    assert len(report.rows) == len(vae.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("decoder", DECODERS)
def test_whole_k_sample_elbo_gradient(backend, decoder):
    """(ELBO-4): the ELBO averaged over k = 3 samples, with a KL weight, every gradient."""
    vae = small_vae(decoder, backend, "elbo", 3)
    report = check_model(vae, data(decoder), noise(3), beta=0.4)
    assert report.passed, "\n" + report.table()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("decoder", DECODERS)
def test_iwae_loss_is_minus_the_bound_written_out(backend, decoder):
    """(IWAE-1) (IWAE-2) (IWAE-4): the training loss equals -mean_b log mean_i p(x, z_i)/q(z_i|x)
    computed independently: (IWAE-3)'s densities with z - mu, and the decoder alone."""
    vae = small_vae(decoder, backend, "iwae", 5)
    X, eps = data(decoder), noise(5)
    loss, _ = vae.loss_and_gradients(X, eps)
    mu, logvar = vae.encode(X)
    z = mu + np.exp(0.5 * logvar) * eps
    nll = vae.engine.decoder_nll(np.tile(X, (5, 1)), z.reshape(20, 3)).reshape(5, 4)
    log_w = -nll + log_normal_diag(z, 0.0, 0.0) - log_normal_diag(z, mu, logvar)
    assert loss == pytest.approx(-np.mean(log_mean_exp(log_w, axis=0)), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("decoder", DECODERS)
def test_k1_iwae_is_the_elbo_with_its_kl_sampled(backend, decoder):
    """(IWAE-4) k = 1: -L_1 = -log p(x|z) + log q(z|x) - log p(z), today's ELBO with the KL
    estimated from the same draw, to rounding; its decoder gradients are the ELBO's exactly."""
    X, eps = data(decoder), noise(1)
    iwae = small_vae(decoder, backend, "iwae", 1)
    elbo = small_vae(decoder, backend, "elbo", 1)
    loss, g_iwae = iwae.loss_and_gradients(X, eps)
    elbo_loss, g_elbo = elbo.loss_and_gradients(X, eps[0])
    recon, kl = elbo.elbo_terms(X, eps[0])
    mu, logvar = elbo.encode(X)
    z = mu + np.exp(0.5 * logvar) * eps[0]
    kl_sampled = log_normal_diag(z, mu, logvar) - log_normal_diag(z, 0.0, 0.0)
    assert loss == pytest.approx(np.mean(recon + kl_sampled), rel=1e-12)
    assert elbo_loss == pytest.approx(np.mean(recon + kl), rel=1e-12)
    for name in g_elbo:
        if name.startswith("dec."):
            np.testing.assert_allclose(g_iwae[name], g_elbo[name], rtol=1e-12, atol=1e-15)


def test_k1_iwae_is_the_elbo_on_average():
    """(IWAE-4): E_eps[-r] is the closed-form KL (KL-1), so the mean of -L_1 over many draws is
    the mean -ELBO, within Monte-Carlo error."""
    iwae, elbo = small_vae(objective="iwae", k=1), small_vae(objective="elbo", k=1)
    X = data("bernoulli")
    eps = np.random.default_rng(5).standard_normal((4000, 4, 3))
    a = np.array([iwae.loss_and_gradients(X, e[None])[0] for e in eps[:400]])
    b = np.array([elbo.loss_and_gradients(X, e)[0] for e in eps[:400]])
    se = np.std(a - b) / math.sqrt(len(a))
    assert abs(np.mean(a - b)) < 4 * se
    assert np.std(a - b) > 1e-3  # the two differ draw by draw: the test is not vacuous


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_sample_elbo_with_one_sample_is_the_elbo(backend):
    """(ELBO-4) with k = 1 is (ELBO-2): eps (1, B, J) through the k-sample path gives the seed's
    loss and every gradient, to rounding."""
    vae = small_vae("gaussian", backend, "elbo", 1)
    X, eps = data("gaussian"), noise(1)
    a = vae.engine.forward_backward(X, eps, 0.7)
    ga = vae.grads.flat.copy()
    b = vae.engine.forward_backward(X, eps[0], 0.7)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(ga, vae.grads.flat, rtol=1e-10, atol=1e-14)


def test_more_samples_tighten_the_bound():
    """(IWAE-1): at fixed weights, the mean of L_k over draws rises with k (L_1 <= L_5 <= L_50)."""
    vae = small_vae(objective="iwae", k=1)
    X = data("bernoulli", n=8)
    rng = np.random.default_rng(3)
    means = []
    for k in (1, 5, 50):
        cfg = VAEConfig(**{**vae.config.to_dict(), "k": k})
        v = VAE.from_config(cfg)
        v.params.flat[...] = vae.params.flat
        means.append(np.mean([-v.loss_and_gradients(X, rng.standard_normal((k, 8, 3)))[0]
                              for _ in range(200)]))
    assert means[0] < means[1] < means[2]


# --------------------------------------------------------------------------- the ops
def test_log_mean_exp_weights_are_the_softmax_and_its_gradient():
    """(IWAE-2) (IWAE-5): log_mean_exp_forward is stable, its cached weights are the softmax over
    the samples (summing to 1), and the backward is dL * w~, checked by finite differences."""
    rng = np.random.default_rng(0)
    log_w = rng.normal(-90, 3, (6, 5))  # exp(-90) underflows float32: the naive form fails
    L, w = ops.log_mean_exp_forward(log_w)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=1e-14)
    soft = np.exp(log_w - log_w.max(0)) / np.exp(log_w - log_w.max(0)).sum(0)
    np.testing.assert_allclose(w, soft, rtol=1e-14)
    np.testing.assert_allclose(L, np.log(np.mean(np.exp(log_w + 90), 0)) - 90, rtol=1e-13)
    dL = rng.normal(size=5)
    lw = log_w.copy()
    report = check_gradients(lambda: float(dL @ ops.log_mean_exp_forward(lw)[0]), {"log_w": lw},
                             {"log_w": ops.log_mean_exp_backward(dL, w)})
    assert report.passed, report.table()


def test_log_prior_ratio_forward_and_backward():
    """(IWAE-4) r = log N(z; 0, I) - log N(z; mu, sigma^2) at z = mu + sigma * eps; (IWAE-6) its
    gradients in z and logvar (eps held fixed) by finite differences."""
    rng = np.random.default_rng(1)
    mu, logvar, eps = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(5, 4, 3))
    z = mu + np.exp(0.5 * logvar) * eps
    r, cache = ops.log_prior_ratio_forward(z, eps, logvar)
    expected = log_normal_diag(z, 0.0, 0.0) - log_normal_diag(z, mu, logvar)
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    dr = rng.normal(size=(5, 4))
    dz, dlogvar = ops.log_prior_ratio_backward(dr, cache)

    def f():
        return float(np.sum(dr * ops.log_prior_ratio_forward(z, eps, logvar)[0]))

    report = check_gradients(f, {"z": z, "logvar": logvar}, {"z": dz, "logvar": dlogvar})
    assert report.passed, report.table()


# --------------------------------------------------------------------------- engines
@pytest.mark.parametrize("objective", ["iwae", "elbo"])
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-11), ("float32", 2e-5)])
def test_fused_engine_equals_reference(objective, decoder, dtype, rtol):
    """(IWAE-5) (IWAE-6) (ELBO-4): kernels.ksample + FastEngine give the reference's loss and
    gradients (float32: up to summation order and the polynomial exp), B = 9, k = 4."""
    X = data(decoder, n=9, d=40, seed=2).astype(dtype)
    eps = noise(4, n=9, J=4, seed=3).astype(dtype)
    out = {}
    for backend in BACKENDS:
        vae = VAE(n_input=40, hidden=(16, 8), n_latent=4, decoder=decoder, dtype=dtype, seed=2,
                  backend=backend, objective=objective, k=4)
        randomize_biases(vae, np.random.default_rng(3), scale=0.3)
        loss, grads = vae.loss_and_gradients(X, eps, beta=1.0 if objective == "iwae" else 0.6)
        out[backend] = (loss, grads)
    (l_ref, g_ref), (l_fast, g_fast) = out["numpy"], out["numba"]
    assert l_fast == pytest.approx(l_ref, rel=rtol)
    for name, g in g_ref.items():
        scale = np.abs(g).max()
        assert np.abs(g_fast[name] - g).max() <= rtol * 10 * scale, name


def test_fused_iwae_step_allocates_no_batch_sized_array():
    """The k-sample step keeps the engine's promise: after warm-up no array of B rows (let alone
    k * B) is allocated per step. As in test_fast's check, B = 4096 keeps a step's Python
    bookkeeping (under 1 KB, with a one-off ~3 KB seen once) far below any batch-sized array."""
    B, k = 4096, 5
    vae = VAE(n_input=784, hidden=(64,), n_latent=8, activation="tanh", backend="numba",
              objective="iwae", k=k)
    X = (np.random.default_rng(0).random((B, 784)) < 0.3).astype(np.float32)
    vae.step(X)
    vae.step(X)
    tracemalloc.start()
    try:
        peaks = []
        for _ in range(3):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            vae.step(X)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    assert max(peaks) < B * X.itemsize, f"peak traced allocation per step: {peaks} bytes"


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("k, match", [(0, "k=0"), (2.5, "whole number"), (True, "whole number"),
                                      ("5", "whole number")])
def test_bad_k_is_refused(k, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(k=k)


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match=r"objective='vimco'.*\['elbo', 'iwae'\]"):
        VAEConfig(objective="vimco")


@pytest.mark.parametrize("objective, k, shape", [("iwae", 5, (4, 3)), ("iwae", 5, (4, 4, 3)),
                                                 ("elbo", 1, (1, 4, 3)), ("elbo", 2, (4, 3))])
def test_eps_of_the_wrong_shape_names_the_expected_one(objective, k, shape):
    vae = small_vae(objective=objective, k=k)
    expected = (4, 3) if (objective, k) == ("elbo", 1) else (k, 4, 3)
    with pytest.raises(ValueError, match=re.escape(f"expected {expected}")):
        vae.loss_and_gradients(data("bernoulli"), np.zeros(shape))


def test_iwae_with_a_kl_weight_is_refused():
    vae = small_vae(objective="iwae", k=2)
    with pytest.raises(ValueError, match="no separate KL term"):
        vae.loss_and_gradients(data("bernoulli"), noise(2), beta=0.5)
    cfg = VAEConfig(hidden=(8,), n_latent=2, objective="iwae", k=2)
    with pytest.raises(ValueError, match="no separate KL term"):
        Trainer(cfg, tcfg(warmup_epochs=1), "/nonexistent-never-written", log=lambda s: None)


# --------------------------------------------------------------------------- training runs
def tcfg(**kw):
    base = dict(epochs=2, batch_size=50, train_size=300, test_size=100, figures=False, seed=2,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_under_another_objective_is_refused(tmp_path):
    """A checkpoint trained with one objective is never continued with another: the error names
    both and the fix; nothing is written."""
    cfg = VAEConfig(hidden=(16,), n_latent=2, objective="iwae", k=3)
    Trainer(cfg, tcfg(epochs=1), tmp_path, log=lambda s: None).run()
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match=r"objective='iwae'.*objective='elbo'.*Fix"):
        Trainer(None, tcfg(epochs=2), tmp_path, resume=True, expect={"objective": "elbo"},
                log=lambda s: None)
    with pytest.raises(ValueError, match=r"k=3.*k=5.*--k 3"):
        Trainer(None, tcfg(epochs=2), tmp_path, resume=True, expect={"k": 5},
                log=lambda s: None)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    # resuming as it was continues (and keeps the objective)
    t = Trainer(None, tcfg(epochs=2), tmp_path, resume=True, expect={"objective": "iwae", "k": 3},
                log=lambda s: None)
    t.run()
    assert (t.vae.config.objective, t.vae.config.k, t.epoch) == ("iwae", 3, 2)


def test_iwae_training_raises_the_bound_and_checkpoints_keep_the_objective(tmp_path):
    """Training on -L_5 (fused engine) lowers -L_5 on the training images; the checkpoint holds
    objective and k, and a reloaded model is the same model."""
    cfg = VAEConfig(hidden=(32,), n_latent=4, objective="iwae", k=5, seed=3)
    t = Trainer(cfg, tcfg(epochs=3), tmp_path, log=lambda s: None)
    t.run()
    h = t.history["train_loss"]
    assert h[-1] < h[0] - 5, h
    back = VAE.load(tmp_path / CHECKPOINT)
    assert (back.config.objective, back.config.k) == ("iwae", 5)
    np.testing.assert_array_equal(back.params.flat, t.vae.params.flat)
    # the history follows the bound it trains on, on the test set, and it is below the -ELBO
    assert all(b < e for b, e in zip(t.history["test_neg_lk"], t.history["test_loss"],
                                     strict=True))
    results = __import__("json").loads((tmp_path / "results.json").read_text())
    assert results["objective"] == "iwae" and 0 <= results["active_units"] <= 4


def test_old_configs_load_as_the_seeds_objective():
    """A config written before objectives existed (no "objective", no "k") is the ELBO, k = 1."""
    d = VAEConfig().to_dict()
    del d["objective"], d["k"]
    cfg = VAEConfig.from_dict(d)
    assert (cfg.objective, cfg.k) == ("elbo", 1)


# --------------------------------------------------------------------------- Burda's setup
def test_burda_schedule():
    """Phases i = 1..8 of 3^(i-1) passes at 1e-3 * 10^(-(i-1)/7): 3280 passes, 1e-3 to 1e-4."""
    assert BURDA_PASSES == 3280
    phases = [burda_phase(e) for e in range(BURDA_PASSES)]
    assert [phases.count(i) for i in range(1, 9)] == [3 ** (i - 1) for i in range(1, 9)]
    assert learning_rate("burda", 1e-3, 0) == 1e-3
    assert learning_rate("burda", 1e-3, 1) == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert learning_rate("burda", 1e-3, BURDA_PASSES - 1) == pytest.approx(1e-4)
    assert learning_rate("constant", 1e-3, 500) == 1e-3


def test_trainer_follows_the_schedule_and_sets_the_output_bias(tmp_path):
    """--schedule burda: the learning rate of each pass is recorded and used; --output-bias
    data-mean: the decoder's output bias starts at the logit of the training mean."""
    cfg = VAEConfig(hidden=(8,), n_latent=2, seed=1)
    t = Trainer(cfg, tcfg(epochs=5, schedule="burda", output_bias="data-mean"), tmp_path,
                log=lambda s: None)
    b0 = t.vae.params["dec.out.b"].copy()
    mean = np.clip(np.concatenate(list(t._train_floats())).mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(b0, np.log(mean / (1 - mean)), rtol=1e-5, atol=1e-5)
    t.run()
    assert t.history["lr"] == pytest.approx([1e-3] + [1e-3 * 10 ** (-1 / 7)] * 3
                                            + [1e-3 * 10 ** (-2 / 7)])
    assert t.vae.optimizer.lr == pytest.approx(1e-3 * 10 ** (-2 / 7))


def test_active_units_counts_units_whose_mean_varies():
    """Burda's criterion: Cov_x(E_q[z_j|x]) > 0.01; a unit whose encoder weights are zero has a
    constant mean and is inactive."""
    vae = VAE(n_input=12, hidden=(), n_latent=4, seed=0)
    X = np.random.default_rng(0).random((500, 12)).astype(np.float32)
    vae.params["enc.mu.W"][:, 2:] = 0  # units 2 and 3: mean = bias, the same for every x
    vae.params["enc.mu.W"][:, :2] *= 5
    assert active_units(vae, X) == 2
    assert active_units(vae, iter([X[:200], X[200:]])) == 2
    assert active_units(vae, X, threshold=1e9) == 0


def test_numerical_gradient_is_really_used():
    """The finite differences above are not trivially equal to the analytic ones: a wrong seed
    (1/B for every sample instead of w~/B) fails the whole-objective check."""
    vae = small_vae(objective="iwae", k=4)
    X, eps = data("bernoulli"), noise(4)
    _, grads = vae.loss_and_gradients(X, eps)
    name = "dec.out.b"
    numeric = numerical_gradient(lambda: vae.loss_and_gradients(X, eps)[0], vae.params[name])
    np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-9)
    elbo = small_vae(objective="elbo", k=4)
    _, g_elbo = elbo.loss_and_gradients(X, eps)
    assert np.abs(g_elbo[name] - numeric).max() > 1e-3  # uniform weights give another gradient


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variance, floor", [("conditional", 0.05), ("shared", 0.05),
                                             ("shared", None)])
def test_whole_iwae_gradient_with_the_gaussian_options(backend, variance, floor):
    """(IWAE-5) (IWAE-6) with the variance floor (GAU-5) and the shared log-variance (GAU-6):
    the k-sample path goes back through them as the ELBO's does."""
    vae = small_vae("gaussian", backend, "iwae", 3, decoder_variance=variance,
                    decoder_var_floor=floor)
    report = check_model(vae, data("gaussian"), noise(3))
    assert report.passed, "\n" + report.table()
    assert len(report.rows) == len(vae.parameters())
