"""The honest Gaussian decoder: the variance floor, the shared variance, dequantisation and the
discrete nats and bits/dim they report; the Frey block split; old files and bad input."""

import io
import json
import math
import zipfile

import numpy as np
import pytest

from numpyvae import VAE, data, ops
from numpyvae.batches import dequantize_static, iterate_batches
from numpyvae.checkpoint import read_checkpoint
from numpyvae.cli import main
from numpyvae.config import VAR_FLOOR_8BIT, TrainConfig, VAEConfig
from numpyvae.evaluate import bits_per_dim, discrete_nats, evaluate
from numpyvae.fast import FastEngine
from numpyvae.gradcheck import check_gradients, check_model, randomize_biases
from numpyvae.layers import Bias, layout
from numpyvae.runs import RunData


def gaussian_vae(backend="numpy", dtype="float64", **kw):
    vae = VAE(n_input=12, hidden=(7, 5), n_latent=3, activation="tanh", decoder="gaussian",
              dtype=dtype, seed=4, backend=backend, **kw)
    randomize_biases(vae, np.random.default_rng(5), scale=0.5)
    return vae


# ------------------------------------------------------------------ the floor
def test_floor_is_log_of_floor_plus_exp():
    """(GAU-4) s = c + softplus(a - c) equals log(sigma2_min + e^a), stays above c = log
    sigma2_min, and is a (the head itself) far above the floor."""
    a = np.linspace(-40, 30, 701)
    for floor in (VAR_FLOOR_8BIT, 1e-3, 0.5):
        s, _ = ops.logvar_floor_forward(a, math.log(floor))
        np.testing.assert_allclose(s, np.log(floor + np.exp(a)), rtol=1e-13, atol=1e-13)
        assert np.all(s >= math.log(floor))  # > in exact arithmetic
    s_big, _ = ops.logvar_floor_forward(np.array([60.0, 700.0]), math.log(VAR_FLOOR_8BIT))
    np.testing.assert_allclose(s_big, [60.0, 700.0], rtol=1e-15)  # no exp(700) overflow
    # the bound: no pixel's NLL term can go below (log 2 pi + c) / 2, whatever the head says
    x, m = np.full((1, 3), 0.5), np.full((1, 3), 0.5)
    s, _ = ops.logvar_floor_forward(np.full((1, 3), -1e4), math.log(VAR_FLOOR_8BIT))
    nll, _ = ops.gaussian_nll_forward(x, m, s)
    assert nll[0] == pytest.approx(3 * 0.5 * (math.log(2 * math.pi) + math.log(VAR_FLOOR_8BIT)))


def test_floor_gradient_by_finite_differences():
    """(GAU-5) ds/da = sigma(a - c): logvar_floor_backward against central differences."""
    rng = np.random.default_rng(0)
    a = rng.normal(-3, 4, size=(4, 6))
    ds = rng.normal(size=(4, 6))
    c = math.log(0.01)
    da = ops.logvar_floor_backward(ds, ops.logvar_floor_forward(a, c)[1])
    report = check_gradients(lambda: float(np.sum(ds * ops.logvar_floor_forward(a, c)[0])),
                             {"a": a}, {"a": da})
    assert report.max_rel_error < 1e-7


def test_shared_variance_forward_and_gradient():
    """(GAU-6) one log-variance per pixel for every row; its gradient is the column sum."""
    rng = np.random.default_rng(1)
    b, ds = rng.normal(size=5), rng.normal(size=(3, 5))
    s, _ = ops.shared_forward(b, 3)
    assert s.shape == (3, 5) and np.all(s == b)
    report = check_gradients(lambda: float(np.sum(ds * ops.shared_forward(b, 3)[0])),
                             {"b": b}, {"b": ops.shared_backward(ds)})
    assert report.max_rel_error < 1e-8


def test_shared_variance_is_a_bias_only_layer():
    """(GAU-6) the layout's dec.logvar is a Bias: a (D,) parameter, no weight; params,
    both engines and checkpoints count it the same."""
    cfg = VAEConfig(n_input=12, hidden=(7,), n_latent=3, decoder="gaussian",
                    decoder_variance="shared")
    lay = layout(cfg)
    assert isinstance(lay.dec_heads[1], Bias) and lay.shared_logvar
    shapes = lay.shapes()
    assert "dec.logvar.W" not in shapes and shapes["dec.logvar.b"] == (12,)
    assert lay.size == sum(int(np.prod(s)) for s in shapes.values())
    assert layout(VAEConfig(n_input=12, hidden=(7,), n_latent=3, decoder="gaussian")).size \
        == lay.size + 7 * 12
    vae = VAE(cfg)
    m, s = vae.decode(np.random.default_rng(0).standard_normal((4, 3)))
    assert np.all(s == s[0])  # the same variance for every z


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("variance", ["conditional", "shared"])
@pytest.mark.parametrize("floor", [None, VAR_FLOOR_8BIT, 0.05])
def test_whole_model_gradient_with_floor_and_shared_variance(backend, variance, floor):
    """(GAU-4) (GAU-5) (GAU-6) (ELBO-3) the whole -ELBO's gradient, noise fixed, against
    central finite differences in float64, on both engines."""
    vae = gaussian_vae(backend, decoder_var_floor=floor, decoder_variance=variance)
    rng = np.random.default_rng(6)
    X, eps = rng.random((4, 12)), rng.standard_normal((4, 3))
    report = check_model(vae, X, eps, rng=rng)
    assert report.passed, report.table()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variance", ["conditional", "shared"])
def test_fused_floor_kernel_equals_reference(dtype, variance):
    """(GAU-4) (GAU-5) (GAU-6) kernels.gaussian_floor_loss_grad through FastEngine gives the
    reference engine's loss and gradients, with the floor binding on some pixels."""
    from numpyvae import network

    vae = gaussian_vae("numba", dtype, decoder_var_floor=0.02, decoder_variance=variance)
    vae.params[vae.layout.dec_heads[1].b][...] = np.linspace(-8, 2, 12)  # below and above
    rng = np.random.default_rng(7)
    for B in (1, 9):
        X = rng.random((B, 12)).astype(dtype)
        eps = rng.standard_normal((B, 3)).astype(dtype)
        fast = FastEngine(vae.layout, vae.params, vae.grads).forward_backward(X, eps, 0.8)
        g_fast = vae.grads.flat.copy()
        ref = network.forward_backward(vae.params, vae.grads, vae.layout, X, eps, 0.8)
        np.testing.assert_allclose(fast, ref, rtol=1e-5 if dtype == "float32" else 1e-12)
        scale = np.abs(vae.grads.flat).max()
        assert np.abs(g_fast - vae.grads.flat).max() / scale < (
            1e-5 if dtype == "float32" else 1e-12)
        np.testing.assert_allclose(vae.decode(eps)[1], network.decode(
            vae.params, vae.layout, eps)[0][1], rtol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_no_floor_is_the_old_decoder(backend):
    """(GAU-1) (GAU-4) with decoder_var_floor=None the log-variance is the head's output a
    itself; the same weights with a floor give c + softplus(a - c) of that same a."""
    old = gaussian_vae(backend, decoder_var_floor=None)
    floored = gaussian_vae(backend, decoder_var_floor=0.05)
    np.testing.assert_array_equal(old.params.flat, floored.params.flat)
    rng = np.random.default_rng(8)
    X, eps = rng.random((5, 12)), rng.standard_normal((5, 3))
    z = rng.standard_normal((5, 3))
    m, a = old.decode(z)
    np.testing.assert_allclose(floored.decode(z)[1],
                               ops.logvar_floor_forward(a, math.log(0.05))[0], rtol=1e-12)
    recon, _ = old.elbo_terms(X, eps)
    mu, logvar = old.encode(X)
    m, s = old.decode(mu + np.exp(0.5 * logvar) * eps)
    np.testing.assert_allclose(recon, ops.gaussian_nll_forward(X, m, s)[0], rtol=1e-12)
    assert old.config.decoder_var_floor is None and old.layout.log_var_floor is None


def test_default_floor_is_on_for_gaussian_and_absent_for_bernoulli():
    assert VAEConfig(decoder="gaussian").decoder_var_floor == VAR_FLOOR_8BIT
    assert VAEConfig().decoder_var_floor is None
    assert VAR_FLOOR_8BIT == pytest.approx(np.var(np.arange(10**6) / 10**6 / 256), rel=1e-5)


# ------------------------------------------------------------------ dequantisation
def test_dequantised_batches_lie_in_their_grey_level():
    """(GAU-7) x = (pixel + u)/256: floor(256 x) is the pixel, u is fresh for every batch and
    epoch, and the same generator state gives the same draws."""
    images = np.random.default_rng(0).integers(0, 256, size=(10, 6), dtype=np.uint8)
    images[0] = 255
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(3)
        batches = [b.copy() for b in iterate_batches(images, 4, rng=rng, binarize="none",
                                                     dtype=dtype, shuffle=False,
                                                     dequantize=True)]
        x = np.concatenate(batches)
        assert x.dtype == dtype and x.min() >= 0 and x.max() < 1
        np.testing.assert_array_equal(np.floor(x * 256).astype(np.uint8), images)
        again = np.concatenate([b.copy() for b in iterate_batches(
            images, 4, rng=np.random.default_rng(3), binarize="none", dtype=dtype,
            shuffle=False, dequantize=True)])
        np.testing.assert_array_equal(x, again)
        second = np.concatenate([b.copy() for b in iterate_batches(
            images, 4, rng=rng, binarize="none", dtype=dtype, shuffle=False, dequantize=True)])
        assert not np.array_equal(x, second)  # a new epoch draws new u
        u = x * 256 - images
        assert 0.3 < u.mean() < 0.7  # uniform in [0, 1), not /255 and not a constant offset
    fixed = dequantize_static(images, seed=1)
    np.testing.assert_array_equal(fixed, dequantize_static(images, seed=1))
    np.testing.assert_array_equal(np.floor(fixed * 256).astype(np.uint8), images)


def test_dequantised_density_bounds_the_pixel_probability():
    """(GAU-7) for a one-pixel Gaussian model, E_u[log p((k+u)/256)] - log 256 is at most
    log P(k) = log of the mass on k's grey level (quadrature), and close to it."""
    def ndtr(t):
        return 0.5 * math.erfc(-t / math.sqrt(2))

    for m, var in ((0.3, 0.01), (0.5, 1e-4), (0.1, VAR_FLOOR_8BIT * 4)):
        for k in (0, 26, 77, 128, 255):
            u = (np.arange(20000) + 0.5) / 20000  # midpoint rule over u in [0, 1)
            x = (k + u) / 256
            log_p = -0.5 * (math.log(2 * math.pi * var) + (x - m) ** 2 / var)
            bound = log_p.mean() - math.log(256)  # (GAU-7)
            sd = math.sqrt(var)
            mass = ndtr(((k + 1) / 256 - m) / sd) - ndtr((k / 256 - m) / sd)
            if mass < 1e-200:
                continue
            assert bound <= math.log(mass) + 1e-9
            assert -discrete_nats(-log_p.mean(), 1) == pytest.approx(bound, abs=1e-12)


def test_bits_per_dim():
    """(GAU-8) nats / (D ln 2); the uniform density on [0, 1)^D (log p = 0) is 8 bits/dim."""
    D = 560
    assert bits_per_dim(D * math.log(2) * 3.5, D) == pytest.approx(3.5, rel=1e-15)
    assert bits_per_dim(discrete_nats(0.0, D), D) == pytest.approx(8.0, rel=1e-15)
    assert discrete_nats(-859.37, D) == pytest.approx(-859.37 + D * math.log(256))


def test_evaluate_reports_discrete_numbers():
    """(GAU-7) (GAU-8) evaluate(..., dequantized=True): the discrete -ELBO and -L_k are the
    density's plus D log 256, and in bits/dim; -L_k <= -ELBO on average."""
    vae = gaussian_vae()
    X = dequantize_static(np.random.default_rng(0).integers(0, 256, (6, 12), dtype=np.uint8),
                          seed=2, dtype=np.float64)
    r = evaluate(vae, X, k=50, n_samples=20, rng=np.random.default_rng(0), dequantized=True)
    assert r["discrete_neg_elbo"] == pytest.approx(r["neg_elbo"] + 12 * math.log(256))
    assert r["discrete_neg_log_likelihood_iw"] == pytest.approx(
        r["neg_log_likelihood_iw"] + 12 * math.log(256))
    assert r["discrete_neg_elbo_bits_per_dim"] == pytest.approx(
        r["discrete_neg_elbo"] / (12 * math.log(2)))
    assert r["discrete_neg_log_likelihood_iw"] <= r["discrete_neg_elbo"]
    assert "discrete_neg_elbo" not in evaluate(vae, X, rng=np.random.default_rng(0))


def test_frey_run_data_is_dequantised_by_default():
    """(GAU-7) a Gaussian run's training pixels stay uint8 (u is drawn per batch) and its test
    set is one fixed seeded dequantisation; --no-dequantize gives the old grey values / 255."""
    d = RunData.prepare(TrainConfig(dataset="frey"), "gaussian")
    assert d.dequantize and d.train_x.dtype == np.uint8
    np.testing.assert_array_equal(np.floor(d.test_x * 256).astype(np.uint8), d.ds.test_images)
    np.testing.assert_array_equal(d.test_x, RunData.prepare(TrainConfig(dataset="frey"),
                                                            "gaussian").test_x)
    old = RunData.prepare(TrainConfig(dataset="frey", dequantize=False), "gaussian")
    np.testing.assert_array_equal(old.test_x, d.ds.test_images / np.float32(255))


# ------------------------------------------------------------------ the Frey split
def test_frey_block_split_keeps_test_frames_away_from_training_frames():
    """Held out: 10 runs of 20 consecutive frames; 5 frames on each side dropped; no training
    frame within 5 frames of a test frame."""
    frames = np.arange(1965)[:, None]  # each row holds its own frame number
    train, test = data.block_holdout_split(frames)
    train, test = train[:, 0], test[:, 0]
    assert (len(train), len(test)) == (1665, 200)
    assert not set(train) & set(test)
    runs = np.split(test, np.flatnonzero(np.diff(test) != 1) + 1)
    assert [len(r) for r in runs] == [20] * 10
    distance = np.abs(train[:, None] - test[None, :]).min()
    assert distance == 6  # the nearest training frame is 6 away: 5 dropped in between
    ds = data.load_dataset("frey")
    assert ds.train_images.shape == (1665, 560) and ds.test_images.shape == (200, 560)
    old = data.load_dataset("frey", split="random")
    assert old.test_images.shape == (197, 560)
    with pytest.raises(ValueError, match="do not fit"):
        data.block_holdout_split(frames[:100])


# ------------------------------------------------------------------ old files, bad input
def test_a_checkpoint_without_the_new_fields_loads_as_before(tmp_path):
    """A config stored before the floor, the shared variance and the block split existed
    means no floor, a conditional variance, no dequantisation and the random split."""
    vae = gaussian_vae(decoder_var_floor=None)
    path = vae.save(tmp_path / "new.npz", {"train_config": {"dataset": "frey"}})
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
    for key in ("decoder_var_floor", "decoder_variance"):
        del meta["config"][key]
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    members["meta.npy"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "old.npz", "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    ck = read_checkpoint(tmp_path / "old.npz")
    assert ck.config.decoder_var_floor is None and ck.config.decoder_variance == "conditional"
    old = VAE.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.params.flat, vae.params.flat)
    tc = TrainConfig.from_dict(ck.train_state["train_config"])
    assert tc.dequantize is False and tc.split == "random"


@pytest.mark.parametrize("kwargs, message", [
    (dict(decoder="gaussian", decoder_var_floor=0.0), "positive variance or None"),
    (dict(decoder="gaussian", decoder_var_floor=-1e-3), "positive variance or None"),
    (dict(decoder="gaussian", decoder_var_floor=float("nan")), "positive variance or None"),
    (dict(decoder="gaussian", decoder_var_floor="none"), "positive variance or None"),
    (dict(decoder="bernoulli", decoder_var_floor=1e-3), "floor is an option of the Gaussian"),
    (dict(decoder="bernoulli", decoder_variance="shared"), "Bernoulli decoder has no variance"),
    (dict(decoder="gaussian", decoder_variance="fixed"), "choose one of"),
])
def test_bad_gaussian_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)


def test_dequantize_with_a_bernoulli_decoder_is_refused():
    with pytest.raises(ValueError, match="dequantize with a Bernoulli decoder"):
        RunData.prepare(TrainConfig(dataset="frey", dequantize=True, binarize="none"),
                        "bernoulli")
    images = np.zeros((3, 4), np.uint8)
    with pytest.raises(ValueError, match="needs binarize='none'"):
        iterate_batches(images, 2, rng=np.random.default_rng(0), binarize="dynamic",
                        dequantize=True)
    with pytest.raises(ValueError, match="split"):
        TrainConfig(split="odd")


# ------------------------------------------------------------------ the command line
def test_cli_trains_and_evaluates_frey_in_bits_per_dim(tmp_path, capsys):
    """(GAU-7) (GAU-8) numpyvae train/evaluate report the discrete nats and bits/dim."""
    out = tmp_path / "frey"
    argv = ["train", "--dataset", "frey", "--hidden", "16", "--latent", "2", "--epochs", "1",
            "--train-size", "300", "--test-size", "40", "--no-progress", "--no-figures",
            "--decoder-variance", "shared", "--var-floor", "1e-4", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dequantized"] is True
    assert results["test_discrete_neg_elbo"] == pytest.approx(
        results["test_neg_elbo"] + 560 * math.log(256))
    history = json.loads((out / "history.json").read_text())
    assert history["test_bits_per_dim"][0] == pytest.approx(
        history["test_discrete_loss"][0] / (560 * math.log(2)))
    vae = VAE.load(out / "checkpoint.npz")
    assert vae.config.decoder_var_floor == 1e-4 and vae.layout.shared_logvar
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "5"]) == 0
    text = capsys.readouterr().out
    assert "bits/dim" in text and "-L_5" in text and "one fixed seeded u" in text


@pytest.mark.parametrize("argv, message", [
    (["train", "--var-floor", "0"], "must be > 0"),
    (["train", "--var-floor", "inf"], "finite"),
    (["train", "--decoder-variance", "fixed"], "invalid choice"),
])
def test_bad_variance_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--decoder-variance", "shared", "--epochs", "1", "--train-size", "100"],
     "Bernoulli decoder has no variance"),
    (["train", "--dataset", "frey", "--decoder", "bernoulli", "--binarize", "none",
      "--dequantize", "--var-floor", "none", "--epochs", "1"],
     "dequantize with a Bernoulli decoder"),
])
def test_gaussian_options_with_a_bernoulli_decoder_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
