"""Each Numba kernel against the reference ops it fuses, in float32 and float64.

Tolerances. A kernel value y is accepted when |y - ref| <= rtol * (|ref| + scale):
rtol = 1e-6 in float32 (about 8 ulp) and 1e-12 in float64. ``scale`` is 0 for values computed
without cancellation; for a difference of O(1) quantities such as sigma(a) - x it is the size of
those quantities, because one ulp of disagreement in sigma(a) (the kernels use their own exp,
NumPy its own) is then a large *relative* error of a small difference. Subnormal results may
differ by one subnormal step (``TINY``). The polynomial helpers are measured in ulp.
"""

import math

import numpy as np
import pytest

from numpyvae import kernels, ops
from numpyvae.network import activation_pair
from numpyvae.optim import Adam

DTYPES = ["float32", "float64"]
RTOL = {np.dtype("float32"): 1e-6, np.dtype("float64"): 1e-12}


def assert_close(got, ref, scale=0.0):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.dtype == ref.dtype, f"dtype {got.dtype}, reference {ref.dtype}"
    rtol = RTOL[ref.dtype]
    tiny = np.finfo(ref.dtype).smallest_subnormal
    bound = rtol * (np.abs(ref) + scale) + tiny
    bad = ~(np.abs(got - ref) <= bound) & ~(np.isnan(got) & np.isnan(ref)) & ~(got == ref)
    assert not bad.any(), (
        f"{bad.sum()} entries differ, e.g. got {got[bad][:3]} expected {ref[bad][:3]}"
    )


def ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float32 spacing at exact (exact given in float64)."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def logits_like(shape, dtype, rng):
    """Mostly moderate values, plus the extremes that break naive formulas."""
    a = rng.normal(0.0, 4.0, shape)
    flat = a.reshape(-1)
    extremes = [1e4, -1e4, 100.0, -100.0, 88.0, -88.0, 30.0, -30.0, 0.0, 1e-30, -1e-30]
    flat[: len(extremes)] = extremes
    return a.astype(dtype)


# --------------------------------------------------------------------------- helpers
def test_exp_float32_accuracy():
    """vexp, used by (ACT-1) (BER-2) (GAU-1): <= 2 ulp wherever exp is a normal float32,
    within one subnormal step below that, and exact inf / 0 / NaN at the edges."""
    x = np.linspace(-104.0, 88.72, 2_000_001).astype(np.float32)
    out = np.empty_like(x)
    kernels.exp_array(x, out)
    exact = np.exp(x.astype(np.float64))
    normal = exact >= np.finfo(np.float32).tiny
    assert ulp_error(out[normal], exact[normal]).max() <= 2.0
    assert np.abs(out[~normal] - exact[~normal]).max() <= np.finfo(np.float32).smallest_subnormal
    edges = np.array([np.nan, np.inf, -np.inf, 89.0, -105.0, 0.0], np.float32)
    kernels.exp_array(edges, out[:6])
    np.testing.assert_array_equal(out[:6], [np.nan, np.inf, 0.0, np.inf, 0.0, 1.0])


def test_log1p_float32_accuracy():
    """vlog1p on its domain [0, 1] (e = exp(-|a|) in (ACT-1) (BER-2)): <= 2 ulp, including
    subnormal e, where log1p(e) = e."""
    e = np.concatenate([np.linspace(0.0, 1.0, 1_000_001),
                        np.geomspace(1e-45, 1.0, 500_000)]).astype(np.float32)
    out = np.empty_like(e)
    kernels.log1p_array(e, out)
    exact = np.log1p(e.astype(np.float64))
    normal = exact >= np.finfo(np.float32).tiny
    assert ulp_error(out[normal], exact[normal]).max() <= 2.0
    np.testing.assert_array_equal(out[~normal], e[~normal])
    edge = np.array([np.nan], np.float32)
    kernels.log1p_array(edge, edge)
    assert np.isnan(edge[0])


def test_tanh_float32_accuracy():
    """vtanh, used by (ACT-5): <= 2 ulp, odd, saturating to +-1, NaN in NaN out."""
    x = np.concatenate([np.linspace(-12.0, 12.0, 1_000_001),
                        np.geomspace(1e-38, 12.0, 200_000)]).astype(np.float32)
    out = np.empty_like(x)
    kernels.tanh_array(x, out)
    exact = np.tanh(x.astype(np.float64))
    nonzero = exact != 0
    assert ulp_error(out[nonzero], exact[nonzero]).max() <= 2.0
    edges = np.array([np.nan, np.inf, -np.inf, 1e4, -1e4, 0.0], np.float32)
    kernels.tanh_array(edges, out[:6])
    np.testing.assert_array_equal(out[:6], [np.nan, 1.0, -1.0, 1.0, -1.0, 0.0])


def test_float64_helpers_are_libm():
    """In float64 the helpers are math.exp / math.log1p / math.tanh: accuracy first."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-700, 700, 10_000)
    e = rng.random(10_000)
    out = np.empty_like(x)
    kernels.exp_array(x, out)
    np.testing.assert_array_equal(out, [math.exp(v) for v in x])
    kernels.log1p_array(e, out)
    np.testing.assert_array_equal(out, [math.log1p(v) for v in e])
    kernels.tanh_array(x / 100, out)
    np.testing.assert_array_equal(out, [math.tanh(v) for v in x / 100])


# --------------------------------------------------------------------------- dense + activation
def _bias_act(kernel, a, b):
    h, d = a.copy(), np.empty_like(a)
    kernel(h, b, d)
    return h, d


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_softplus(dtype):
    """(DENSE-1) (ACT-1) (ACT-2) (ACT-3) fused bias + softplus + sigma equals
    ops.softplus_forward and ops.softplus_backward's derivative, for |a| up to 1e4."""
    rng = np.random.default_rng(1)
    a, b = logits_like((13, 37), dtype, rng), rng.normal(0, 1, 37).astype(dtype)
    h, d = _bias_act(kernels.bias_softplus, a, b)
    ref_h, cache = ops.softplus_forward(a + b)
    assert_close(h, ref_h)
    assert_close(d, ops.softplus_backward(np.ones_like(a), cache))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu(dtype):
    """(DENSE-1) (ACT-6) fused bias + relu + its derivative: bitwise ops.relu_forward/backward,
    NaN propagating as in np.maximum."""
    rng = np.random.default_rng(2)
    a, b = logits_like((9, 21), dtype, rng), rng.normal(0, 1, 21).astype(dtype)
    a[0, 0] = np.nan
    h, d = _bias_act(kernels.bias_relu, a, b)
    ref_h, cache = ops.relu_forward(a + b)
    np.testing.assert_array_equal(h, ref_h)
    np.testing.assert_array_equal(d, ops.relu_backward(np.ones_like(a), cache))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_tanh(dtype):
    """(DENSE-1) (ACT-5) fused bias + tanh + 1 - tanh^2 equals ops.tanh_forward/backward.
    1 - h^2 cancels where tanh saturates: an error r in h moves it by 2 h^2 r <= 2r."""
    rng = np.random.default_rng(3)
    a, b = logits_like((11, 19), dtype, rng), rng.normal(0, 1, 19).astype(dtype)
    h, d = _bias_act(kernels.bias_tanh, a, b)
    ref_h, cache = ops.tanh_forward(a + b)
    assert_close(h, ref_h)
    assert_close(d, ops.tanh_backward(np.ones_like(a), cache), scale=2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["softplus", "relu", "tanh"])
def test_backward_bias(dtype, act):
    """(ACT-2) (ACT-5) (ACT-6) (DENSE-3) dh * derivative and the bias gradient's column sums:
    bitwise the reference's act_backward and dense_backward's db."""
    rng = np.random.default_rng(4)
    a = rng.normal(0, 2, (17, 23)).astype(dtype)
    dh = rng.normal(0, 1, (17, 23)).astype(dtype)
    forward, backward = activation_pair(ops, act)
    _, cache = forward(a)
    ref_da = backward(dh, cache)
    _, _, ref_db = ops.dense_backward(ref_da, (a, np.zeros((23, 1), dtype)), need_dx=False)
    dact = backward(np.ones_like(a), cache)
    da, db = dh.copy(), np.empty(23, dtype)
    kernels.backward_bias(da, dact, db)
    np.testing.assert_array_equal(da, ref_da)
    np.testing.assert_array_equal(db, ref_db)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (17, 23), (100, 500), (127, 33)])
def test_backward_bias_transposed_is_backward_bias_of_the_transpose(dtype, shape):
    """(DENSE-4) computed transposed, W G^T of shape (H, B), then (ACT-2) (DENSE-3): the
    kernel writes dL/da and the bias gradient bitwise as backward_bias does on its transpose,
    the (B, H) input gradient G W^T."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    B, H = shape
    dh_t = rng.normal(0, 1, (H, B)).astype(dtype)
    dact = rng.random((B, H)).astype(dtype)
    ref, ref_db = dh_t.T.copy(), np.empty(H, dtype)
    kernels.backward_bias(ref, dact, ref_db)
    dh, db = np.full((B, H), np.nan, dtype), np.full(H, np.nan, dtype)
    kernels.backward_bias_transposed(dh_t, dact, db, dh)
    np.testing.assert_array_equal(dh, ref)
    np.testing.assert_array_equal(db, ref_db)


# --------------------------------------------------------------------------- losses
def _bernoulli(logits, b, x):
    B, D = logits.shape
    g, loss, db = logits.copy(), np.empty(B, logits.dtype), np.empty(D, logits.dtype)
    kernels.bernoulli_loss_grad(g, b, x, logits.dtype.type(1.0 / B), loss, db,
                                np.empty(D, logits.dtype))
    return loss, g, db


def _bernoulli_ref(logits, b, x):
    B = logits.shape[0]
    a = logits + b
    loss, cache = ops.bce_with_logits_forward(a, x)
    g = ops.bce_with_logits_backward(np.full(B, 1.0 / B, dtype=a.dtype), cache)
    return loss, g, g.sum(axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["uniform", "zeros", "ones"])
def test_bernoulli_loss_grad(dtype, targets):
    """(BER-2) (BER-3) (ELBO-3) (DENSE-3) per-example -log p(x|z), dlogits / B and the bias
    gradient in one pass equal ops.bce_with_logits_forward/backward, logits up to +-1e4 and
    all-zero / all-one images. Row sums are taken in another order than NumPy's pairwise sum
    (all terms >= 0, so no cancellation): compared at rtol 1e-5 in float32."""
    rng = np.random.default_rng(5)
    B, D = 6, 784
    logits = logits_like((B, D), dtype, rng)
    b = rng.normal(0, 1, D).astype(dtype)
    x = {"uniform": rng.random((B, D)), "zeros": np.zeros((B, D)),
         "ones": np.ones((B, D))}[targets].astype(dtype)
    loss, g, db = _bernoulli(logits, b, x)
    ref_loss, ref_g, ref_db = _bernoulli_ref(logits, b, x)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    assert_close(g, ref_g, scale=1.0 / B)  # sigma(a) - x: operands of size 1, times 1/B
    assert_close(db, ref_db, scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_nan_propagates(dtype):
    """(BER-2) a NaN logit makes its example's loss NaN, as in the reference."""
    logits = np.zeros((2, 8), dtype)
    logits[1, 3] = np.nan
    loss, g, _ = _bernoulli(logits, np.zeros(8, dtype), np.ones((2, 8), dtype))
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isnan(g[1, 3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_loss_grad(dtype):
    """(GAU-1) (GAU-2) (GAU-3) (ELBO-3) (DENSE-3) Gaussian NLL and its gradients in one pass
    equal ops.gaussian_nll_forward/backward, logvar up to +-50."""
    rng = np.random.default_rng(6)
    B, D = 5, 300
    mean = rng.normal(0, 1, (B, D)).astype(dtype)
    logvar = rng.normal(0, 2, (B, D)).astype(dtype)
    logvar[0, :4] = [50.0, -50.0, 30.0, -30.0]
    bm, blv = rng.normal(0, 0.1, D).astype(dtype), rng.normal(0, 0.1, D).astype(dtype)
    x = rng.normal(0, 1, (B, D)).astype(dtype)
    gm, glv = mean.copy(), logvar.copy()
    loss, dbm, dblv = np.empty(B, dtype), np.empty(D, dtype), np.empty(D, dtype)
    kernels.gaussian_loss_grad(gm, glv, bm, blv, x, np.dtype(dtype).type(1.0 / B), loss, dbm,
                               dblv, np.empty(D, dtype))
    ref_loss, cache = ops.gaussian_nll_forward(x, mean + bm, logvar + blv)
    ref_gm, ref_glv = ops.gaussian_nll_backward(np.full(B, 1.0 / B, dtype), cache)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert_close(gm, ref_gm)
    assert_close(glv, ref_glv, scale=0.5 / B)  # 1 - diff^2 / var cancels near the fit
    assert_close(dbm, ref_gm.sum(axis=0), scale=np.abs(ref_gm).sum(axis=0))
    assert_close(dblv, ref_glv.sum(axis=0), scale=1.0)


# --------------------------------------------------------------------------- latent layer
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_latent_forward_backward(dtype, beta):
    """(REP-1) (REP-2) (REP-3) (KL-1) (KL-2) (KL-3) (ELBO-3) reparameterisation and KL with
    their gradients (the KL's scaled by beta / B and added) equal ops.reparameterize_* and
    ops.kl_standard_normal_*, logvar up to +-50."""
    rng = np.random.default_rng(7)
    B, J = 9, 20
    mu0 = rng.normal(0, 1, (B, J)).astype(dtype)
    lv0 = rng.normal(0, 1, (B, J)).astype(dtype)
    lv0[0, :6] = [50.0, -50.0, 20.0, -20.0, 1e-4, -1e-4]
    bmu, blv = rng.normal(0, 0.1, J).astype(dtype), rng.normal(0, 0.1, J).astype(dtype)
    blv[:6] = 0.0
    eps = rng.standard_normal((B, J)).astype(dtype)
    dz = rng.normal(0, 1, (B, J)).astype(dtype)
    mu, lv = mu0.copy(), lv0.copy()
    z, std, kl = np.empty_like(mu), np.empty_like(mu), np.empty(B, dtype)
    kernels.latent_forward(mu, lv, bmu, blv, eps, z, std, kl)
    ref_z, rep_cache = ops.reparameterize_forward(mu0 + bmu, lv0 + blv, eps)
    ref_kl, kl_cache = ops.kl_standard_normal_forward(mu0 + bmu, lv0 + blv)
    assert_close(z, ref_z, scale=np.abs(mu0 + bmu))
    np.testing.assert_allclose(kl, ref_kl, rtol=1e-5 if dtype == "float32" else 1e-12)

    dmu, dlv = np.empty_like(mu), np.empty_like(mu)
    dbmu, dblv = np.empty(J, dtype), np.empty(J, dtype)
    T = np.dtype(dtype).type
    kernels.latent_backward(dz, mu, lv, std, eps, T(beta / B), dmu, dlv, dbmu, dblv)
    dmu_rep, dlv_rep = ops.reparameterize_backward(dz, rep_cache)
    dmu_kl, dlv_kl = ops.kl_standard_normal_backward(np.full(B, beta / B, dtype), kl_cache)
    assert_close(dmu, dmu_rep + dmu_kl, scale=np.abs(dmu_rep) + np.abs(dmu_kl))
    assert_close(dlv, dlv_rep + dlv_kl, scale=np.abs(dlv_rep) + np.abs(dlv_kl))
    assert_close(dbmu, (dmu_rep + dmu_kl).sum(axis=0), scale=np.abs(dmu).sum(axis=0))
    assert_close(dblv, (dlv_rep + dlv_kl).sum(axis=0), scale=np.abs(dlv).sum(axis=0))


def test_mean64():
    """The batch means are accumulated in float64."""
    x = np.array([1e8, 1.0, -1e8, 3.0], np.float32)
    assert kernels.mean64(x) == 1.0


# --------------------------------------------------------------------------- optimiser
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_is_bitwise_reference(dtype):
    """(ADAM-1) (ADAM-2) (ADAM-3) (ADAM-4) the fused update equals optim.Adam bitwise over
    several steps: the same IEEE operations in the same order, and no FMA."""
    from numpyvae.fast import FastAdam

    rng = np.random.default_rng(8)
    P = 1001
    theta_ref = rng.normal(0, 1, P).astype(dtype)
    theta = theta_ref.copy()
    ref = Adam(P, dtype, lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-7)
    fast = FastAdam(P, dtype, lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-7)
    for _ in range(6):
        grad = rng.normal(0, 1, P).astype(dtype)
        grad[:3] = [0.0, 1e-30, 1e10]
        ref.step(theta_ref, grad)
        fast.step(theta, grad)
    np.testing.assert_array_equal(theta, theta_ref)
    np.testing.assert_array_equal(fast.m, ref.m)
    np.testing.assert_array_equal(fast.v, ref.v)
    assert fast.t == ref.t == 6


# --------------------------------------------------------------------------- teaching matmul
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 300, 5), (66, 130, 520), (100, 784, 33)])
def test_matmul_equals_numpy(dtype, shape):
    """kernels.matmul = np.matmul for odd shapes and transposed (strided) operands; sums are
    accumulated in another order than BLAS, so they agree to rounding of K-term sums."""
    M, K, N = shape
    rng = np.random.default_rng(9)
    a = rng.normal(0, 1, (M, K)).astype(dtype)
    b = rng.normal(0, 1, (K, N)).astype(dtype)
    out = np.empty((M, N), dtype)
    tol = 1e-5 if dtype == "float32" else 1e-13
    scale = np.abs(a) @ np.abs(b)  # the size of the terms being summed
    kernels.matmul(a, b, out)
    assert np.all(np.abs(out - a @ b) <= tol * scale)
    bt = np.ascontiguousarray(b.T).T  # an F-ordered view, as fast.py's W.T
    kernels.matmul(a, bt, out)
    assert np.all(np.abs(out - a @ b) <= tol * scale)


def test_cache_dir_falls_back_when_package_is_read_only(monkeypatch, tmp_path):
    """cache=True needs a writable directory: a read-only install caches under ~/.cache."""
    import numba

    from numpyvae.kernels import _jit

    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(_jit.os, "access", lambda path, mode: False)
    monkeypatch.setenv("HOME", str(tmp_path))
    _jit._ensure_cache_dir()
    assert numba.config.CACHE_DIR == str(tmp_path / ".cache" / "numpyvae" / "numba")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "/explicit")
    _jit._ensure_cache_dir()
    assert numba.config.CACHE_DIR == "/explicit"  # NUMBA_CACHE_DIR always wins
