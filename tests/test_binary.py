"""(DENSE-5) the first layer on 0/1 data: x W and x^T G as sums of rows, in the kernels, on
BLAS's threads, and inside the fused engine.

The sums are the matrix products with their zero terms left out, so they must agree with
np.matmul to rounding (another order of the same additions): float64 to 1e-13 and float32 to
1e-5, relative to the largest entry (measured: up to 2.2e-6 for an activation's derivative
after sums of ~100 float32 rows). Pooled, they must be bitwise the serial kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from numpyvae import kernels, network
from numpyvae.fast import FastEngine
from numpyvae.kernels import pool as blas_pool
from numpyvae.model import VAE

POOL = blas_pool.get()
needs_pool = pytest.mark.skipif(POOL is None, reason="no OpenBLAS pthreads pool in this process")
TOL = {np.float32: 1e-5, np.float64: 1e-13}
CODE = {kernels.bias_softplus: 0, kernels.bias_relu: 1, kernels.bias_tanh: 2}


def ones_and_zeros(B, D, density, dtype, seed=0):
    return (np.random.default_rng(seed).random((B, D)) < density).astype(dtype)


def rel_err(got, want):
    return float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-300)


def listed(x):
    B, D = x.shape
    cols, counts = np.full((B, D), -1, np.int32), np.full(B, -1, np.int64)
    assert kernels.binary_rows(x, cols, counts, x.size)
    return cols, counts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,D,density", [(1, 1, 1.0), (3, 7, 0.5), (5, 784, 0.13),
                                         (4, 17, 0.0), (4, 17, 1.0), (9, 64, 0.02)])
def test_binary_rows_lists_each_rows_ones_in_order(dtype, B, D, density):
    """(DENSE-5) S_n, the ones of each row, ascending; D not a multiple of 8 included."""
    x = ones_and_zeros(B, D, density, dtype)
    cols, counts = listed(x)
    for i in range(B):
        np.testing.assert_array_equal(cols[i, :counts[i]], np.flatnonzero(x[i]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [0.5, -1.0, 2.0, np.nan, np.inf, 1e-30])
def test_binary_rows_refuses_anything_but_zero_and_one(dtype, bad):
    """One value other than 0 or 1, in any row, and the batch is not 0/1 (the engine then
    takes BLAS). -0.0 is a zero."""
    x = ones_and_zeros(6, 30, 0.3, dtype)
    x[4, 29] = bad
    assert not kernels.binary_rows(x, np.empty((6, 30), np.int32), np.empty(6, np.int64), x.size)
    x[4, 29] = -0.0
    cols, counts = listed(x)
    assert 29 not in cols[4, :counts[4]]


def test_binary_rows_stops_past_max_ones():
    """0/1 data with more ones than max_ones is refused (the engine then takes BLAS, which is
    as fast once a third or so of the values are ones)."""
    x = np.zeros((4, 10))
    x[:, :3] = 1  # 12 ones
    cols, counts = np.empty((4, 10), np.int32), np.empty(4, np.int64)
    assert kernels.binary_rows(x, cols, counts, 12)
    assert not kernels.binary_rows(x, cols, counts, 11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", [kernels.bias_softplus, kernels.bias_tanh, kernels.bias_relu])
@pytest.mark.parametrize("B,D,H,density", [(1, 9, 5, 0.5), (7, 40, 33, 0.3),
                                           (50, 784, 500, 0.13), (6, 20, 16, 0.0)])
def test_sums_of_rows_of_W_are_the_forward_product(dtype, kernel, B, D, H, density):
    """(DENSE-5) (DENSE-1) binary_bias_act = <activation>(x @ W + b) and its derivative,
    rows with no ones included (then h = f(b))."""
    assert kernels.ACTIVATION_CODES[kernel.__name__.split("_")[1]] == CODE[kernel]
    rng = np.random.default_rng(1)
    x = ones_and_zeros(B, D, density, dtype, seed=2)
    W, b = rng.standard_normal((D, H)).astype(dtype), rng.standard_normal(H).astype(dtype)
    h_ref, d_ref = x @ W, np.empty((B, H), dtype)
    kernel(h_ref, b, d_ref)
    cols, counts = listed(x)
    h, d = np.full((B, H), np.nan, dtype), np.full((B, H), np.nan, dtype)
    kernels.binary_bias_act(W, cols, counts, b, h, d, CODE[kernel])
    assert rel_err(h, h_ref) <= TOL[dtype] and rel_err(d, d_ref) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,D,H,density", [(1, 9, 5, 0.5), (7, 40, 33, 0.3),
                                           (100, 784, 500, 0.13), (6, 20, 16, 0.0)])
def test_sums_of_rows_of_G_are_the_weight_gradient(dtype, B, D, H, density):
    """(DENSE-5) (DENSE-2) binary_weight_grad = x.T @ G; every row written (zeros where the
    input is never 1), over the whole range and over pieces of it."""
    x = ones_and_zeros(B, D, density, dtype, seed=3)
    G = np.random.default_rng(4).standard_normal((B, H)).astype(dtype)
    cols, counts = listed(x)
    want = x.T @ G
    scratch = (np.empty(B, np.int64), np.empty(D + 1, np.int64), np.empty(B * D, np.int32))
    for cuts in ([0, D], [0, D // 3, D // 3, D], [0, 1, D - 1, D] if D > 2 else [0, D]):
        dW = np.full((D, H), np.nan, dtype)
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            kernels.binary_weight_grad(G, cols, counts, lo, hi, dW, *scratch)
        assert rel_err(dW, want) <= TOL[dtype], cuts


def test_a_row_of_zeros_and_a_row_of_ones():
    """(DENSE-5) the two extremes in one batch, exactly (small integers sum exactly)."""
    x = np.zeros((2, 11))
    x[1] = 1
    W = np.arange(11 * 3, dtype=np.float64).reshape(11, 3)
    cols, counts = listed(x)
    h, d = np.empty((2, 3)), np.empty((2, 3))
    kernels.binary_bias_act(W, cols, counts, np.zeros(3), h, d, CODE[kernels.bias_relu])
    np.testing.assert_array_equal(h, [[0, 0, 0], W.sum(axis=0)])
    dW = np.empty((11, 3))
    G = np.array([[1.0, 2, 3], [4, 5, 6]])
    kernels.binary_weight_grad(G, cols, counts, 0, 11, dW, np.empty(2, np.int64),
                               np.empty(12, np.int64), np.empty(22, np.int32))
    np.testing.assert_array_equal(dW, np.tile([4.0, 5, 6], (11, 1)))


@needs_pool
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("B", [1, 5, 100])
def test_pooled_sums_are_bitwise_the_serial_kernels(n, B):
    """(DENSE-5) split by rows (forward) and by inputs (weight gradient) between BLAS's
    threads: the same bits as one serial call. (The test process has one BLAS thread, see
    conftest.py, so n = 2 runs in the subprocess of the next test.)"""
    n = min(n, POOL.threads())  # more chunks than threads would wait for a thread forever
    D, H = 784, 64
    x = ones_and_zeros(B, D, 0.13, np.float32, seed=B)
    rng = np.random.default_rng(5)
    W, b = rng.standard_normal((D, H), np.float32), rng.standard_normal(H, np.float32)
    G = rng.standard_normal((B, H), np.float32)
    cols, counts = listed(x)
    h_ref, d_ref, dW_ref = np.empty((B, H), np.float32), np.empty((B, H), np.float32), None
    kernels.binary_bias_act(W, cols, counts, b, h_ref, d_ref, CODE[kernels.bias_softplus])
    dW_ref = np.empty((D, H), np.float32)
    kernels.binary_weight_grad(G, cols, counts, 0, D, dW_ref, np.empty(B, np.int64),
                               np.empty(D + 1, np.int64), np.empty(B * D, np.int32))

    cols2, counts2 = np.empty((B, D), np.int32), np.empty(B, np.int64)
    flags = np.zeros(POOL.max_threads, np.int64)
    h, d = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    task = POOL.binary_act(kernels.bias_softplus, W, b, h, d, cols2, counts2, flags)
    task.call[0] = x.ctypes.data
    POOL.run(task, n=n)
    assert flags[:min(n, B)].all()
    np.testing.assert_array_equal(h, h_ref)
    np.testing.assert_array_equal(d, d_ref)
    dW = np.full((D, H), np.nan, np.float32)
    POOL.run(POOL.binary_grad(G, cols2, counts2, dW, np.empty((n, B), np.int64),
                              np.empty(D + n, np.int64), np.empty(B * D, np.int32)), n=n)
    np.testing.assert_array_equal(dW, dW_ref)

    x[B - 1, D - 1] = 0.5  # the last chunk's rows are not 0/1: it says so
    flags[:] = 1
    POOL.run(task, n=n)
    assert not flags[:min(n, B)].all()


@needs_pool
def test_pooled_sums_on_two_blas_threads():
    """(DENSE-5) the test above and the seed model's pooled step on two BLAS threads, in a
    process of its own."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, test_binary as t\n"
        "from numpyvae.kernels import pool\n"
        "assert pool.get().threads() == 2, pool.get().threads()\n"
        "for B in (1, 5, 100):\n"
        "    for n in (1, 2): t.test_pooled_sums_are_bitwise_the_serial_kernels(n, B)\n"
        "t.test_seed_model_steps_with_and_without_the_sums_agree()\n"
        "print('ok')\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["ok"], out.stderr[-2000:]


def engine_pair(dtype, hidden=(24, 16), decoder="bernoulli", D=40, objective="elbo"):
    vae = VAE(n_input=D, hidden=hidden, n_latent=4, decoder=decoder, dtype=dtype, seed=2,
              objective=objective)
    return vae, FastEngine(vae.layout, vae.params, vae.grads, objective=objective)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("B", [5, 20])
def test_engine_takes_the_sums_for_0_1_data_and_equals_the_reference(dtype, decoder, B):
    """(DENSE-5) (ELBO-3) on 0/1 data the fused step uses the sums (ws.x_is_binary; the
    weight gradient from 16 rows on, below it BLAS's) and its loss and every gradient equal
    network.forward_backward's; grey data, and 0/1 data with more than a quarter ones
    (fast.MAX_ONES_FRACTION), take BLAS."""
    vae, engine = engine_pair(dtype, decoder=decoder)
    rng = np.random.default_rng(6)
    eps = rng.standard_normal((B, 4)).astype(dtype)
    for X, binary in [(ones_and_zeros(B, 40, 0.15, dtype), True),
                      (ones_and_zeros(B, 40, 0.6, dtype), False),  # dense 0/1: BLAS
                      (rng.random((B, 40)).astype(dtype), False)]:
        loss = engine.forward_backward(X, eps, 0.8)
        assert engine._workspaces[B].x_is_binary is binary
        fast = vae.grads.flat.copy()
        ref = network.forward_backward(vae.params, vae.grads, vae.layout, X, eps, 0.8)
        np.testing.assert_allclose(loss, ref, rtol=1e-6 if dtype == "float32" else 1e-12)
        assert rel_err(fast, vae.grads.flat) <= (1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_k_samples_take_the_sums_too(objective):
    """(DENSE-5) (IWAE-6) the k-sample step's encoder on 0/1 data, against the reference."""
    vae, engine = engine_pair("float64", objective=objective)
    X = ones_and_zeros(20, 40, 0.15, np.float64)
    eps = np.random.default_rng(7).standard_normal((3, 20, 4))
    loss = engine.forward_backward(X, eps)
    assert engine._workspaces[20].x_is_binary
    fast = vae.grads.flat.copy()
    ref = network.ReferenceEngine(vae.layout, vae.params, vae.grads,
                                  objective=objective).forward_backward(X, eps)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    assert rel_err(fast, vae.grads.flat) <= 1e-12


def test_seed_model_steps_with_and_without_the_sums_agree():
    """(DENSE-5) ten float32 Adam steps of the seed model on binarised batches of 100 (the
    pooled path where the pool exists): the same losses to 1e-5 and parameters to 1e-4 (a
    tenth of one Adam step), with the first layer's products summed or left to BLAS."""
    X = ones_and_zeros(100, 784, 0.13, np.float32, seed=8)
    runs = []
    for binary in (True, False):
        vae = VAE(seed=0, backend="numba")
        vae.engine.binary_input = binary
        losses = [vae.step(X)[0] for _ in range(10)]
        assert vae.engine._workspaces[100].x_is_binary is binary
        runs.append((np.array(losses), vae.params.flat.copy()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    # Adam divides by sqrt(v): where a gradient is ~0 a rounding difference can move a
    # parameter by up to lr = 1e-3 a step; measured at most 6e-6 here
    assert np.abs(runs[0][1] - runs[1][1]).max() <= 1e-4


def test_switched_off_by_the_environment():
    """NUMPYVAE_BINARY_INPUT=0: the engine always takes BLAS (for benchmarks and doubt)."""
    code = ("from numpyvae.model import VAE; import numpy as np; v = VAE(backend='numba');"
            "v.step(np.ones((3, 784), np.float32));"
            "print(v.engine.binary_input, v.engine._workspaces[3].x_is_binary)")
    env = dict(os.environ, NUMPYVAE_BINARY_INPUT="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_whole_model_gradient_check_through_the_sums():
    """(DENSE-5) (ELBO-3) the whole -ELBO's gradient, noise fixed, against central finite
    differences in float64, computed by the fused engine on a 0/1 batch of 16 rows: both the
    forward sums and the weight gradient's sums are on the path checked."""
    from numpyvae.gradcheck import check_model, randomize_biases

    vae = VAE(n_input=12, hidden=(7, 5), n_latent=3, dtype="float64", seed=2, backend="numba")
    randomize_biases(vae, np.random.default_rng(3), scale=0.3)
    X = ones_and_zeros(16, 12, 0.2, np.float64, seed=9)
    eps = np.random.default_rng(1).standard_normal((16, 3))
    report = check_model(vae, X, eps)
    assert vae.engine._workspaces[16].x_is_binary
    assert report.passed, "\n" + report.table()
