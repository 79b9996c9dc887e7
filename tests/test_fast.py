"""The fused engine against the reference network, a whole-model gradient check through it,
training on both backends, and the no-allocation promise of the training step.

Tolerances. Gradients are compared per tensor as max |fast - ref| / max |ref| (the scale of
``numpyvae.gradcheck``): 1e-5 in float32, where the kernels' own exp/log1p differ from NumPy's by
an ulp and sums run in another order (measured <= 8e-7), and 1e-12 in float64 (measured <= 2e-15).
"""

import tracemalloc

import numpy as np
import pytest

from numpyvae import network
from numpyvae.fast import FastAdam, FastEngine
from numpyvae.gradcheck import check_model, randomize_biases
from numpyvae.model import VAE
from numpyvae.optim import Adam

GRAD_TOL = {"float32": 1e-5, "float64": 1e-12}
LOSS_RTOL = {"float32": 1e-6, "float64": 1e-12}


def make_vae(decoder, activation, dtype, hidden, backend="numba", n_input=40, **kw):
    vae = VAE(n_input=n_input, hidden=hidden, n_latent=4, activation=activation,
              decoder=decoder, dtype=dtype, seed=2, backend=backend, **kw)
    randomize_biases(vae, np.random.default_rng(3), scale=0.3)  # every bias path exercised
    return vae


def batch(decoder, B, D, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((B, D))
    if decoder == "bernoulli":
        x = (x < 0.3).astype(float)
    return x.astype(dtype), rng.standard_normal((B, 4)).astype(dtype)


def compare_with_reference(vae, X, eps, beta):
    """Run the engine and network.forward_backward on the same parameters; check everything."""
    dtype = vae.config.dtype
    engine = FastEngine(vae.layout, vae.params, vae.grads)
    fast = engine.forward_backward(X, eps, beta)
    fast_grads = {name: g.copy() for name, g in vae.grads.items()}
    vae.grads.flat[...] = np.nan  # the reference must overwrite every entry
    ref = network.forward_backward(vae.params, vae.grads, vae.layout, X, eps, beta)
    np.testing.assert_allclose(fast, ref, rtol=LOSS_RTOL[dtype])
    for name, ref_g in vae.grads.items():
        assert fast_grads[name].dtype == ref_g.dtype
        err = np.abs(fast_grads[name] - ref_g).max() / max(np.abs(ref_g).max(), 1e-300)
        assert err <= GRAD_TOL[dtype], f"{name}: relative error {err:.2e}"
    return engine, fast


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["softplus", "relu", "tanh"])
@pytest.mark.parametrize("hidden", [(), (24, 16, 12)])
def test_engine_equals_reference(dtype, decoder, activation, hidden):
    """(DENSE-1..4) (ACT-1..6) (BER-2) (BER-3) (GAU-1..3) (REP-1..3) (KL-1..3) (ELBO-2)
    (ELBO-3) loss, recon, KL and every gradient equal network.forward_backward, for batch
    sizes 1, 7 and 100 on one engine (three workspaces, each reused once more)."""
    vae = make_vae(decoder, activation, dtype, hidden)
    for B in (1, 7, 100, 7):
        X, eps = batch(decoder, B, 40, dtype, seed=B)
        compare_with_reference(vae, X, eps, beta=0.7)


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_input_gradients_computed_transposed_or_not(monkeypatch, decoder):
    """(DENSE-4) dL/dh = G W^T, computed straight or as W G^T transposed back
    (``kernels.backward_bias_transposed``, float32 only): both equal network.forward_backward,
    and each other to rounding. The model's layers are narrower than the engine's thresholds,
    so these are lowered: every input gradient of a hidden layer takes the path under test."""
    from numpyvae import fast
    dtype = "float32"
    results = []
    for max_rows in (0, 10**6):  # never transposed; always (where the layer below is hidden)
        monkeypatch.setattr(fast, "TRANSPOSED_MAX_ROWS", max_rows)
        monkeypatch.setattr(fast, "TRANSPOSED_MIN_COLS", 1)
        vae = make_vae(decoder, "softplus", dtype, (24, 16, 12))
        for B in (1, 7, 100):
            X, eps = batch(decoder, B, 40, dtype, seed=B)
            compare_with_reference(vae, X, eps, beta=0.7)
        results.append(vae.grads.flat.copy())
    scale = np.abs(results[0]).max()
    assert np.abs(results[0] - results[1]).max() <= GRAD_TOL[dtype] * scale


def test_float64_keeps_the_straight_input_gradients(monkeypatch):
    """float64 (gradient checks) never takes W G^T: OpenBLAS's float64 kernels round it
    differently from G W^T, and float64 is for exactness, not speed."""
    from numpyvae import fast, kernels
    calls = []
    real = kernels.backward_bias_transposed
    monkeypatch.setattr(fast.kernels, "backward_bias_transposed",
                        lambda *a: calls.append(1) or real(*a))
    vae = VAE(backend="numba", seed=0, dtype="float64")
    vae.step((np.random.default_rng(0).random((100, 784)) < 0.13).astype(np.float64))
    assert calls == []


def test_seed_model_takes_the_transposed_input_gradients_below_128_rows(monkeypatch):
    """The seed model at batch 100 computes its three wide input gradients (DENSE-4) as W G^T
    (784 and 500 columns; not the latent heads' 40), and at batch 128 none."""
    from numpyvae import fast, kernels
    calls = []
    real = kernels.backward_bias_transposed

    def counting(dh_t, *args):
        calls.append(dh_t.shape)
        return real(dh_t, *args)
    monkeypatch.setattr(fast.kernels, "backward_bias_transposed", counting)
    vae = VAE(backend="numba", seed=0)
    u = np.random.default_rng(0).random((128, 784))
    vae.step((u[:100] < 0.13).astype(np.float32))
    assert calls == [(500, 100)] * 3
    calls.clear()
    vae.step((u < 0.13).astype(np.float32))
    assert calls == []


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_separate_decoder_widths(decoder):
    """(DENSE-1..4) an encoder without hidden layers and a one-layer decoder, and the reverse."""
    for hidden, dec_hidden in [((), (9,)), ((11, 5), ())]:
        vae = make_vae(decoder, "softplus", "float64", hidden, decoder_hidden=dec_hidden)
        X, eps = batch(decoder, 5, 40, "float64")
        compare_with_reference(vae, X, eps, beta=1.0)


def test_inputs_of_other_dtype_and_layout():
    """Non-contiguous or float64 inputs to a float32 engine are copied into its buffers."""
    vae = make_vae("bernoulli", "softplus", "float32", (16,))
    X, eps = batch("bernoulli", 6, 40, "float32")
    engine = FastEngine(vae.layout, vae.params, vae.grads)
    expected = engine.forward_backward(X, eps, 1.0)
    grads = vae.grads.flat.copy()
    wide = np.zeros((6, 80), np.float64)
    wide[:, ::2] = X
    assert engine.forward_backward(wide[:, ::2], np.asfortranarray(eps), 1.0) == expected
    np.testing.assert_array_equal(vae.grads.flat, grads)


def test_forward_only_helpers():
    """(ELBO-2) loss() and elbo_terms() agree with forward_backward and leave grads alone."""
    vae = make_vae("gaussian", "tanh", "float64", (10,))
    X, eps = batch("gaussian", 8, 40, "float64")
    engine = FastEngine(vae.layout, vae.params, vae.grads)
    full = engine.forward_backward(X, eps, 0.5)
    grads = vae.grads.flat.copy()
    assert engine.loss(X, eps, 0.5) == pytest.approx(full, rel=1e-15)
    recon, kl = engine.elbo_terms(X, eps)
    assert recon.shape == kl.shape == (8,)
    assert float(np.mean(recon + 0.5 * kl)) == pytest.approx(full[0], rel=1e-12)
    np.testing.assert_array_equal(vae.grads.flat, grads)


def test_bad_shapes_are_explained():
    vae = make_vae("bernoulli", "relu", "float32", ())
    engine = FastEngine(vae.layout, vae.params, vae.grads)
    with pytest.raises(ValueError, match="expected"):
        engine.forward_backward(np.zeros((3, 41), np.float32), np.zeros((3, 4), np.float32))


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["softplus", "relu", "tanh"])
def test_gradcheck_through_numba_backend(decoder, activation):
    """(ELBO-2) (ELBO-3) the whole -ELBO's gradient, noise fixed, against central finite
    differences in float64, computed by the numba backend."""
    vae = make_vae(decoder, activation, "float64", (7, 5), n_input=12)
    X, _ = batch(decoder, 4, 12, "float64")
    if decoder == "bernoulli":
        X = X * 0.9 + 0.05
    eps = np.random.default_rng(1).standard_normal((4, 4))
    report = check_model(vae, X, eps)
    assert isinstance(vae.engine, FastEngine)
    assert report.passed, "\n" + report.table()


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("float64", 1e-13)])
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_training_matches_numpy_backend(dtype, atol, decoder):
    """(ADAM-1..4) five Adam steps from one seed (so the same eps draws) give the same
    parameters on both backends: float32 to 1e-6, a thousandth of one step (lr = 1e-3);
    float64 to 1e-13 (measured: bitwise)."""
    models = [VAE(n_input=64, hidden=(32, 16), n_latent=4, dtype=dtype, decoder=decoder,
                  backend=backend, seed=5) for backend in ("numpy", "numba")]
    assert isinstance(models[1].optimizer, FastAdam)
    assert type(models[0].optimizer) is Adam
    X = (np.random.default_rng(0).random((16, 64)) < 0.3).astype(dtype)
    for _ in range(5):
        losses = [vae.step(X) for vae in models]
    np.testing.assert_allclose(losses[1], losses[0], rtol=LOSS_RTOL[dtype])
    np.testing.assert_allclose(models[1].params.flat, models[0].params.flat, rtol=0, atol=atol)
    np.testing.assert_array_equal(models[1].optimizer.t, models[0].optimizer.t)


def test_fast_adam_state_round_trip():
    """FastAdam keeps Adam's state interface: a restored optimiser continues identically."""
    rng = np.random.default_rng(4)
    theta, grad = rng.normal(size=50).astype(np.float32), rng.normal(size=50).astype(np.float32)
    a = FastAdam(50, "float32")
    a.step(theta, grad)
    b = FastAdam(50, "float32")
    b.load_state({k: np.copy(v) for k, v in a.state().items()})
    t2 = theta.copy()
    a.step(theta, grad)
    b.step(t2, grad)
    np.testing.assert_array_equal(theta, t2)
    with pytest.raises(ValueError, match="float32"):
        a.step(theta.astype(np.float64), grad.astype(np.float64))


@pytest.mark.parametrize("ones", [0.13, 0.3, None, "transposed"])
def test_training_step_allocates_no_batch_sized_array(monkeypatch, ones):
    """After warm-up, vae.step on the seed model (784-500-500-20, float32, B = 4096) allocates
    no array with B elements or more: the peak of traced memory during every step stays below
    B * 4 bytes. NumPy reports its buffers to tracemalloc; what remains is a step's Python
    bookkeeping (views such as W.T, floats, tuples), measured at ~0.8 KB for any B, with a
    one-off ~3 KB (an interpreter cache filling) seen once: a large B keeps that far below
    the size of any batch-sized array. (DENSE-5) Binarised data with 13 % ones takes the
    first layer's sums, with 30 % and grey values BLAS; "transposed": the input gradients
    (DENSE-4) computed as W G^T (below 128 rows in training, forced here): every path is
    checked."""
    from numpyvae import fast
    B = 4096
    if ones == "transposed":
        monkeypatch.setattr(fast, "TRANSPOSED_MAX_ROWS", B + 1)
        ones = 0.13
    vae = VAE(backend="numba", seed=0)
    u = np.random.default_rng(0).random((B, 784))
    X = (u if ones is None else u < ones).astype(np.float32)
    vae.step(X)  # warm-up: compile, workspace, eps buffer
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
    assert vae.engine._workspaces[B].x_is_binary is (ones == 0.13)


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_decoder_nll_matches_reference_decoder(decoder):
    """(BER-2) (GAU-1) the decoder-only pass equals network.decode + nll_forward."""
    from numpyvae import network
    from numpyvae.model import VAE

    vae = VAE(n_input=12, hidden=(7, 5), n_latent=3, decoder=decoder, dtype="float64",
              seed=1, backend="numba")
    rng = np.random.default_rng(0)
    X = rng.random((9, 12))
    z = rng.standard_normal((9, 3))
    outputs, _ = network.decode(vae.params, vae.layout, z)
    expect = network.nll_forward(X, outputs, decoder)[0]
    np.testing.assert_allclose(vae.engine.decoder_nll(X, z), expect, rtol=1e-12)


def test_importance_weighted_bound_same_on_both_backends():
    """(IWAE-1) the bound through the fused decoder equals the reference's, same noise."""
    from numpyvae.evaluate import importance_weighted_bound
    from numpyvae.model import VAE

    X = (np.random.default_rng(0).random((6, 12)) < 0.5).astype(np.float64)
    out = [importance_weighted_bound(VAE(n_input=12, hidden=(7,), n_latent=2, dtype="float64",
                                         seed=1, backend=b), X, 50, np.random.default_rng(3))
           for b in ("numpy", "numba")]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12)
