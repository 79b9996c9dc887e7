"""kernels.pool: float32 kernels run on BLAS's own threads give bitwise the serial results.

Each pooled kernel hands every output element to exactly one chunk, computed by the serial
kernel, so the results must be identical for any number of threads; a whole training run with
the pool must equal one without it, parameter for parameter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from numpyvae import kernels
from numpyvae.kernels import pool as blas_pool
from numpyvae.model import VAE

POOL = blas_pool.get()
needs_pool = pytest.mark.skipif(POOL is None, reason="no OpenBLAS pthreads pool in this process")
F32 = np.float32


@needs_pool
@pytest.mark.parametrize("n", [1, 2, 3, 8])
@pytest.mark.parametrize("P", [16_384, 100_003])
def test_adam_chunks_are_bitwise_serial(n, P):
    """(ADAM-1..4) split into n chunks (more than BLAS has threads is allowed: a chunk count
    above the threads just queues) equals fused.adam_step."""
    rng = np.random.default_rng(0)
    theta, grad = rng.standard_normal(P, dtype=F32), rng.standard_normal(P, dtype=F32)
    m, v = rng.standard_normal(P, dtype=F32), rng.random(P, dtype=F32)
    s = np.array([0.9, 0.1, 0.999, 0.001, 1.3, 1e-8, 1e-3], F32)
    ref = [a.copy() for a in (theta, grad, m, v)]
    kernels.adam_step(*ref, *s)
    POOL.run(POOL.adam(theta, grad, m, v, s), n=min(n, POOL.threads()))
    for got, want in zip((theta, m, v), (ref[0], ref[2], ref[3]), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("blocks", [
    [], [(0, 784, 5)], [(16, 3, 7), (37, 1, 9), (46, 10, 10)], [(100, 2, 450)],
    [(0, 5, 10), (50, 2, 475)],  # a block at the start, one up to the end
])
@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_adam_ranges_cover_every_value_once(blocks, n):
    """The split of the pooled Adam: every value of the flat buffers in exactly one range, at
    most n chunks; each block split by whole rows, the caller's chunk taking the first."""
    P = 1000 if blocks != [(0, 784, 5)] else 3920
    parts = blas_pool.adam_ranges(P, blocks)(n)
    assert 1 <= len(parts) <= n
    covered = np.zeros(P, np.int64)
    for part in parts:
        for lo, hi in part:
            assert 0 <= lo < hi <= P
            covered[lo:hi] += 1
    assert (covered == 1).all()
    for start, rows, cols in blocks:  # row boundaries only, first rows to the first chunk
        firsts = [lo for part in parts for lo, hi in part if start <= lo < start + rows * cols]
        assert all((lo - start) % cols == 0 for lo in firsts)
        assert any(lo == start for lo, hi in parts[0])


def test_adam_ranges_reject_overlapping_or_outside_blocks():
    for blocks in ([(0, 10, 10), (50, 2, 10)], [(990, 2, 10)], [(-1, 1, 1)]):
        with pytest.raises(ValueError, match="inside the 1000 values without overlapping"):
            blas_pool.adam_ranges(1000, blocks)


@needs_pool
@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_adam_split_by_rows_is_bitwise_serial(n):
    """(ADAM-1..4) split by the rows of weight blocks, the rest in equal parts, equals
    fused.adam_step over the whole buffer. The n chunks run one after the other here (this
    process has one BLAS thread, conftest.py); on BLAS's threads they run side by side on
    disjoint values (test_switch_off_and_one_thread_give_serial_engines trains with two)."""
    import ctypes

    rng = np.random.default_rng(2)
    P = 100_003
    theta, grad = rng.standard_normal(P, dtype=F32), rng.standard_normal(P, dtype=F32)
    m, v = rng.standard_normal(P, dtype=F32), rng.random(P, dtype=F32)
    s = np.array([0.9, 0.1, 0.999, 0.001, 1.3, 1e-8, 1e-3], F32)
    ref = [a.copy() for a in (theta, grad, m, v)]
    kernels.adam_step(*ref, *s)
    task = POOL.adam(theta, grad, m, v, s, blocks=[(3, 250, 200), (50_010, 7, 999)])
    args = task.args(n)
    assert args.shape[0] == n
    chunk = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(task.address)
    for i in range(n):
        chunk(args.ctypes.data + i * args.strides[0])
    for got, want in zip((theta, m, v), (ref[0], ref[2], ref[3]), strict=True):
        np.testing.assert_array_equal(got, want)


def test_engine_gives_adam_its_weight_blocks():
    """engines.build hands the fused engine's weight matrices to FastAdam.split_rows: each
    block is exactly that matrix's place in the flat buffer (the heads side by side as one)."""
    for decoder in ("bernoulli", "gaussian"):
        vae = VAE(backend="numba", seed=0, n_input=30, hidden=(9, 7), n_latent=3,
                  decoder=decoder)
        blocks = vae.engine.weight_blocks()
        assert vae.optimizer.blocks == tuple(blocks)
        flat = vae.params.flat
        weights = [a for name, a in vae.params.items() if name.endswith(".W")]
        heads = vae.engine.heads_W
        expected = {id(W) for W in weights if not np.shares_memory(W, heads)} | {id(heads)}
        assert len(blocks) == len(expected)
        for start, rows, cols in blocks:
            view = flat[start:start + rows * cols].reshape(rows, cols)
            assert any(np.shares_memory(view, W) and W.shape == (rows, cols)
                       and np.array_equal(view, W) for W in weights + [heads])


@needs_pool
@pytest.mark.parametrize("kernel", [kernels.bias_softplus, kernels.bias_tanh, kernels.bias_relu])
@pytest.mark.parametrize("B", [1, 3, 100])
def test_bias_activation_rows_are_bitwise_serial(kernel, B):
    """(DENSE-1) (ACT-1..6) by rows on BLAS's threads equals the serial kernel, also when
    there are fewer rows than threads."""
    rng = np.random.default_rng(1)
    a = (3 * rng.standard_normal((B, 37))).astype(F32)
    b = rng.standard_normal(37, dtype=F32)
    h, d, h_ref, d_ref = a.copy(), np.empty_like(a), a.copy(), np.empty_like(a)
    kernel(h_ref, b, d_ref)
    POOL.run(POOL.bias_act(kernel, h, b, d))
    np.testing.assert_array_equal(h, h_ref)
    np.testing.assert_array_equal(d, d_ref)


@needs_pool
@pytest.mark.parametrize("B", [1, 7, 100])
def test_bernoulli_rows_and_column_sum_are_bitwise_the_fused_kernel(B):
    """(BER-2) (BER-3) (DENSE-3) rows on BLAS's threads, then column_sum, equals
    bernoulli_loss_grad: same loss per example, same gradient, same bias gradient."""
    rng = np.random.default_rng(2)
    logits = (4 * rng.standard_normal((B, 50))).astype(F32)
    x = (rng.random((B, 50)) < 0.3).astype(F32)
    b = rng.standard_normal(50, dtype=F32)
    w = F32(1.0 / B)
    g_ref, loss_ref, db_ref = logits.copy(), np.empty(B, F32), np.empty(50, F32)
    kernels.bernoulli_loss_grad(g_ref, b, x, w, loss_ref, db_ref, np.empty(50, F32))
    g, loss, db = logits.copy(), np.empty(B, F32), np.empty(50, F32)
    task = POOL.bernoulli(g, b, loss)
    task.call[0] = x.ctypes.data
    task.weight[0] = w
    POOL.run(task)
    kernels.column_sum(g, db)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(loss, loss_ref)
    np.testing.assert_array_equal(db, db_ref)


@needs_pool
@pytest.mark.parametrize("activation", ["softplus", "tanh"])
def test_training_with_the_pool_is_bitwise_training_without(activation):
    """Ten Adam steps of the seed model (batch 100, float32), pool against serial: the same
    losses and the same 1.3 M parameters, bit for bit."""
    X = (np.random.default_rng(0).random((100, 784)) < 0.2).astype(F32)
    pooled = VAE(backend="numba", seed=0, activation=activation)
    serial = VAE(backend="numba", seed=0, activation=activation)
    assert pooled.engine.pool is POOL and pooled.optimizer.pool is POOL
    serial.engine.pool = serial.optimizer.pool = None
    for _ in range(10):
        assert pooled.step(X) == serial.step(X)
    np.testing.assert_array_equal(pooled.params.flat, serial.params.flat)
    np.testing.assert_array_equal(pooled.optimizer.m, serial.optimizer.m)


def test_float64_never_pools():
    """Gradient checks run in float64: those kernels stay serial (the trampolines are float32)."""
    vae = VAE(backend="numba", seed=0, dtype="float64", n_input=20, hidden=(8,), n_latent=2)
    assert vae.engine.pool is None and vae.optimizer.pool is None


def test_switch_off_and_one_thread_give_serial_engines():
    """NUMPYVAE_BLAS_POOL=0 switches the pool off; with one BLAS thread a pooled call runs on
    the caller alone. Either way training gives the same parameters as the pool, at the same
    BLAS thread count: OpenBLAS's own products round differently with one thread and with two
    (measured: other SHA-256s), so each count is compared with itself. (The binarised batch
    takes the first layer's sums, DENSE-5, in every run.)"""
    code = (
        "import numpy as np, hashlib\n"
        "from numpyvae.model import VAE\n"
        "from numpyvae.kernels import pool\n"
        "X = (np.random.default_rng(0).random((100, 784)) < 0.2).astype(np.float32)\n"
        "v = VAE(backend='numba', seed=0)\n"
        "for _ in range(3): v.step(X)\n"
        "p = pool.get()\n"
        "print(p is None, p.threads() if p else 0,"
        " hashlib.sha256(v.params.flat.tobytes()).hexdigest())\n")

    def run(**env):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                             check=True, capture_output=True, text=True).stdout.split()
        return out[0] == "True", int(out[1]), out[2]

    for threads in ("1", "2"):  # pytest's own process has one (conftest.py)
        off, _, digest_off = run(NUMPYVAE_BLAS_POOL="0", OPENBLAS_NUM_THREADS=threads)
        assert off
        none, got, digest = run(OPENBLAS_NUM_THREADS=threads)
        assert none or got == int(threads)
        assert digest_off == digest, f"{threads} BLAS threads"


def test_a_copied_model_finds_its_own_pool_and_trains_the_same():
    """deepcopy and pickle drop the BLAS handle (ctypes pointers cannot be copied) and the
    copy attaches the pool again: both then take the same steps, bit for bit."""
    import copy
    import pickle

    X = (np.random.default_rng(0).random((100, 784)) < 0.2).astype(F32)
    vae = VAE(backend="numba", seed=0)
    vae.step(X)
    for twin in (copy.deepcopy(vae), pickle.loads(pickle.dumps(vae))):
        assert twin.optimizer.pool is POOL
        assert twin.step(X) == copy.deepcopy(vae).step(X)


def test_handoff_between_blas_threads_is_measured_with_two_threads():
    """kernels.handoff: with two BLAS threads the two chunks pass a counter back and forth
    2 x rounds times and the result is a latency (tens to hundreds of ns on today's chips; well
    under a millisecond anywhere the two threads run side by side)."""
    if POOL is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs OpenBLAS's pthreads pool and two cores")
    code = ("from numpyvae.kernels.handoff import handoff_ns\n"
            "print(repr(handoff_ns(2000)), repr(handoff_ns(2000)))\n")
    out = subprocess.run([sys.executable, "-c", code],
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "2"},
                         check=True, capture_output=True, text=True).stdout.split()
    values = [float(v) for v in out]
    assert all(0 < v < 1e6 for v in values), values


def test_handoff_gives_none_without_a_second_thread():
    """One BLAS thread: nothing to measure, None (pytest's process has one: conftest.py). And
    chunks run one after the other (a pool that cannot run them side by side) give up after
    their spin limit: None, not a hang."""
    import ctypes

    from numpyvae.kernels import handoff

    if POOL is not None:
        assert POOL.threads() == 1
    assert handoff.handoff_ns() is None

    class OneAfterTheOther:
        def threads(self):
            return 2

        def _run(self, n, address, args, stride):
            chunk = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)
            for i in range(n):
                chunk(args + i * stride)

    assert handoff.handoff_ns(100, pool=OneAfterTheOther(), spin_limit=100_000) is None


@needs_pool
def test_run_asking_for_more_threads_than_blas_has_does_not_hang():
    """OpenBLAS started with one thread has no worker: ``gotoblas_pthread`` with two chunks
    would wait for one forever. ``run`` takes at most ``threads()`` and finishes, with the
    serial result."""
    code = ("import numpy as np\n"
            "from numpyvae import kernels\n"
            "from numpyvae.kernels import pool\n"
            "p = pool.get()\n"
            "rng = np.random.default_rng(0)\n"
            "a = [rng.standard_normal(50_000, dtype=np.float32) for _ in range(4)]\n"
            "a[3] = np.abs(a[3])\n"
            "s = np.array([0.9, 0.1, 0.999, 0.001, 1.3, 1e-8, 1e-3], np.float32)\n"
            "ref = [x.copy() for x in a]\n"
            "kernels.adam_step(*ref, *s)\n"
            "p.run(p.adam(*a, s), n=8)\n"
            "print(p.threads(), all(np.array_equal(x, y) for x, y in zip(a, ref)))\n")
    out = subprocess.run([sys.executable, "-c", code],
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=120,
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == ["1", "True"]
