"""The parts of a numba training step, each against its floor, on this machine.

    python benchmarks/bench_parts.py            # a minute or two
    python benchmarks/bench_parts.py --quick

Prints Markdown tables (see benchmarks/README.md, "The parts, and their floors"):

1. Adam over the seed model's 1.32 M parameters: serial, on BLAS's threads (``kernels.pool``),
   and the ways that fight BLAS (Numba ``parallel=True``, a Python thread); each against its
   floor, a kernel with the same loads and stores and no arithmetic. Timed as in a step: right
   after a matrix product (BLAS's worker is spinning) with the buffers pushed out of cache.
2. Every elementwise kernel of a step at batch 100 and 512: serial and pooled (backward_bias and
   column_sum split by columns, as the package does not), and ns per value.
3. What a call costs: a Python call, a Numba call, ``np.matmul(out=)`` of a tiny product, a
   pooled call with nothing to do.
4. The first layer on binarised MNIST: BLAS's products against the sums of rows (DENSE-5),
   serial and on BLAS's threads, at batch 8 to 512.
   The same at batch 100 for 0/1 data with 5 % to 50 % ones (where the sums stop winning).
5. A dynamically binarised batch: NumPy's passes against the fused kernel, and the draws.
6. The two latent heads: two 500 -> 20 products against one 500 -> 40, forward and backward.
7. Input gradients G W^T (DENSE-4) straight, or computed transposed and transposed back, at
   batch 16 to 512.
8. Whether each float32 kernel's inner loop is vectorised (packed ymm/zmm instructions).

Each figure is the median over repeated timings; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from numba import carray, cfunc, njit, prange

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numpyvae import fast, kernels  # noqa: E402
from numpyvae.kernels import pool as blas_pool  # noqa: E402
from numpyvae.kernels.pool import _ARGS, _f32, _i64  # noqa: E402  (the trampolines' building blocks)

F32 = np.float32
SCALARS = tuple(F32(s) for s in (0.9, 0.1, 0.999, 0.001, 1.0, 1e-8, 1e-3))


def median_time(fn, before=None, reps=30) -> float:
    """Median seconds of fn(), each run after before() (untimed)."""
    fn()
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --------------------------------------------------------------------------- Adam and floors
@njit(nogil=True, error_model="numpy", cache=False)
def adam_floor(theta, grad, m, v):
    """Adam's loads (theta, grad, m, v) and stores (theta, m, v), no arithmetic to speak of."""
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = m[i]
        vi = v[i]
        m[i] = g
        v[i] = mi
        theta[i] = vi


@njit(parallel=True, nogil=True, error_model="numpy", cache=False)
def adam_parallel(theta, grad, m, v, b1, one_minus_b1, b2, one_minus_b2, inv_sqrt_c2, eps, step):
    """fused.adam_step with Numba's own threads (prange)."""
    for i in prange(theta.shape[0]):
        g = grad[i]
        mi = m[i] * b1 + g * one_minus_b1
        vi = v[i] * b2 + (g * g) * one_minus_b2
        m[i] = mi
        v[i] = vi
        theta[i] -= (mi / (np.sqrt(vi) * inv_sqrt_c2 + eps)) * step


@cfunc(_ARGS, nogil=True, error_model="numpy", cache=False)
def _floor_chunk(a):
    """The pooled Adam's argument rows (``kernels.pool._adam_chunk``: [theta, grad, m, v,
    scalars, ranges, k]), its loads and stores over the same ranges, no arithmetic."""
    k = a[6]
    ranges = carray(_i64(a[5]), (k, 2))
    for r in range(k):
        lo, n = ranges[r, 0], ranges[r, 1] - ranges[r, 0]
        adam_floor(carray(_f32(a[0] + 4 * lo), (n,)), carray(_f32(a[1] + 4 * lo), (n,)),
                   carray(_f32(a[2] + 4 * lo), (n,)), carray(_f32(a[3] + 4 * lo), (n,)))


def adam_table(reps: int) -> list[tuple[str, float]]:
    P = 1_316_824
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(P, dtype=F32)
    grad = rng.standard_normal(P, dtype=F32) * F32(1e-3)
    m, v = np.zeros(P, F32), np.zeros(P, F32)
    a = rng.random((100, 500), dtype=F32)
    W = rng.random((500, 500), dtype=F32)
    out = np.empty((100, 500), F32)
    flush = np.empty(8_000_000, F32)  # 32 MB, the size of the L3 cache

    def as_in_a_step():  # cold buffers, BLAS's worker just finished a product
        flush.fill(1.0)
        np.matmul(a, W, out=out)

    def serial():
        kernels.adam_step(theta, grad, m, v, *SCALARS)

    class Half(threading.Thread):  # the upper half on a Python thread of ours
        def __init__(self):
            super().__init__(daemon=True)
            self.go, self.done = threading.Event(), threading.Event()

        def run(self):
            h = P // 2
            while True:
                self.go.wait()
                self.go.clear()
                kernels.adam_step(theta[h:], grad[h:], m[h:], v[h:], *SCALARS)
                self.done.set()

    half = Half()
    half.start()

    def python_thread():
        half.go.set()
        h = P // 2
        kernels.adam_step(theta[:h], grad[:h], m[:h], v[:h], *SCALARS)
        half.done.wait()
        half.done.clear()

    rows = [("serial, fused.adam_step", serial),
            ("floor, serial (same loads and stores)", lambda: adam_floor(theta, grad, m, v)),
            ("Numba parallel=True (its own threads)",
             lambda: adam_parallel(theta, grad, m, v, *SCALARS)),
            ("half on a Python thread of ours", python_thread)]
    pool = blas_pool.get()
    if pool is not None:
        scalars = np.array(SCALARS, F32)
        task = pool.adam(theta, grad, m, v, scalars)
        floor = blas_pool.Task("floor", _floor_chunk, task._build, task._keep)
        rows += [(f"on BLAS's {pool.threads()} threads (kernels.pool)", lambda: pool.run(task)),
                 (f"floor, on BLAS's {pool.threads()} threads", lambda: pool.run(floor))]
    return [(name, median_time(fn, as_in_a_step, reps)) for name, fn in rows]


# --------------------------------------------------------------------------- kernels of a step
# Split by columns: what the package does NOT do (slower: a 2000-byte row puts a cache line
# across the boundary in most rows). Defined here only to show that.
@cfunc(_ARGS, nogil=True, error_model="numpy", cache=False)
def _backward_bias_columns(a):
    B, H, lo, hi = a[3], a[4], a[5], a[6]
    kernels.backward_bias(carray(_f32(a[0]), (B, H))[:, lo:hi],
                          carray(_f32(a[1]), (B, H))[:, lo:hi], carray(_f32(a[2]), (H,))[lo:hi])


@cfunc(_ARGS, nogil=True, error_model="numpy", cache=False)
def _column_sum_columns(a):
    B, D, lo, hi = a[2], a[3], a[4], a[5]
    kernels.column_sum(carray(_f32(a[0]), (B, D))[:, lo:hi], carray(_f32(a[1]), (D,))[lo:hi])


def column_task(name, function, g, dact, db):
    """A pooled call of ``function`` on blocks of whole cache lines of a row."""
    B, H = g.shape

    def build(n):
        step = -(-H // n // blas_pool.ALIGN) * blas_pool.ALIGN
        ranges = [(lo, min(H, lo + step)) for lo in range(0, H, step)]
        if dact is None:
            return [[g.ctypes.data, db.ctypes.data, B, H, lo, hi] for lo, hi in ranges]
        return [[g.ctypes.data, dact.ctypes.data, db.ctypes.data, B, H, lo, hi]
                for lo, hi in ranges]
    return blas_pool.Task(name, function, build, (g, dact, db))


def step_kernels(B: int, reps: int) -> list[tuple[str, int, float, float | None]]:
    """(kernel, values, serial seconds, pooled seconds) for the kernels of one step."""
    rng = np.random.default_rng(0)
    pool = blas_pool.get()
    a0 = (3 * rng.standard_normal((B, 500))).astype(F32)
    h, d = a0.copy(), np.empty((B, 500), F32)
    b = np.zeros(500, F32)
    db = np.empty(500, F32)
    lg0 = (3 * rng.standard_normal((B, 784))).astype(F32)
    lg = lg0.copy()
    x = (rng.random((B, 784)) < 0.2).astype(F32)
    bo, loss = np.zeros(784, F32), np.empty(B, F32)
    dbo, tmp = np.empty(784, F32), np.empty(784, F32)
    w = F32(1.0 / B)
    A, Wm = rng.random((B, 500), dtype=F32), rng.random((500, 500), dtype=F32)
    mo = np.empty((B, 500), F32)

    def after_product():  # the kernel's input was just written, BLAS's worker spins
        np.matmul(A, Wm, out=mo)
        np.copyto(h, a0)
        np.copyto(lg, lg0)

    rows = []
    serial = {
        "bias_softplus": lambda: kernels.bias_softplus(h, b, d),
        "backward_bias": lambda: kernels.backward_bias(h, d, db),
        "bernoulli_loss_grad": lambda: kernels.bernoulli_loss_grad(lg, bo, x, w, loss, dbo, tmp),
        "bernoulli_rows": lambda: kernels.bernoulli_rows(lg, bo, x, w, loss, tmp),
        "column_sum": lambda: kernels.column_sum(lg, dbo),
    }
    pooled = {}
    if pool is not None:
        t_act = pool.bias_act(kernels.bias_softplus, h, b, d)
        t_bb = column_task("backward_bias", _backward_bias_columns, h, d, db)
        t_bern = pool.bernoulli(lg, bo, loss)
        t_sum = column_task("column_sum", _column_sum_columns, lg, None, dbo)
        t_bern.call[0] = x.ctypes.data
        t_bern.weight[0] = w
        pooled = {"bias_softplus": lambda: pool.run(t_act),
                  "backward_bias": lambda: pool.run(t_bb),
                  "bernoulli_loss_grad": lambda: (pool.run(t_bern), kernels.column_sum(lg, dbo)),
                  "bernoulli_rows": lambda: pool.run(t_bern),
                  "column_sum": lambda: pool.run(t_sum)}
    for name, fn in serial.items():
        n = lg.size if name.startswith(("bernoulli", "column")) else h.size
        t_serial = median_time(fn, after_product, reps)
        t_pool = median_time(pooled[name], after_product, reps) if name in pooled else None
        rows.append((name, n, t_serial, t_pool))
    return rows


# --------------------------------------------------------------------------- 0/1 sums
def binary_table(B: int, reps: int) -> list[tuple[str, float, float, float | None]]:
    """The first layer on a binarised MNIST batch, as in a step (buffers out of cache, BLAS's
    worker spinning): (pass, BLAS, serial sums, pooled sums) in seconds. Forward: x @ W1 then
    bias + softplus (pooled as the engine does) against ``binary_rows`` + ``binary_bias_act``;
    backward: x^T g against ``binary_weight_grad`` (DENSE-5)."""
    from numpyvae.data import iterate_batches, load_mnist
    pool = blas_pool.get()
    D, H = 784, 500
    x = next(iterate_batches(load_mnist("train")[0][:B], B, rng=np.random.default_rng(0),
                             binarize="dynamic")).copy()
    rng = np.random.default_rng(1)
    W, b = (0.05 * rng.standard_normal((D, H))).astype(F32), np.zeros(H, F32)
    g, dW = rng.standard_normal((B, H), dtype=F32), np.empty((D, H), F32)
    h, d = np.empty((B, H), F32), np.empty((B, H), F32)
    cols, counts = np.empty((B, D), np.int32), np.empty(B, np.int64)
    chunks = pool.max_threads if pool else 1
    starts, ptr, rows = (np.empty((chunks, B), np.int64), np.empty(D + chunks, np.int64),
                         np.empty(B * D, np.int32))
    flags = np.ones(chunks, np.int64)
    flush, A, Wm, mo = (np.empty(8_000_000, F32), rng.random((100, 500), dtype=F32),
                        rng.random((500, 500), dtype=F32), np.empty((100, 500), F32))

    def as_in_a_step():
        flush.fill(1.0)
        np.matmul(A, Wm, out=mo)

    act = pool.bias_act(kernels.bias_softplus, h, b, d) if pool else None

    def blas_forward():
        np.matmul(x, W, out=h)
        pool.run(act) if pool else kernels.bias_softplus(h, b, d)

    def sums_forward():
        kernels.binary_rows(x, cols, counts, x.size)
        kernels.binary_bias_act(W, cols, counts, b, h, d, 0)

    kernels.binary_rows(x, cols, counts, x.size)
    out = [("forward: x @ W1, bias, softplus", median_time(blas_forward, as_in_a_step, reps),
            median_time(sums_forward, as_in_a_step, reps)),
           ("backward: x^T g", median_time(lambda: np.matmul(x.T, g, out=dW), as_in_a_step, reps),
            median_time(lambda: kernels.binary_weight_grad(g, cols, counts, 0, D, dW, starts[0],
                                                           ptr, rows), as_in_a_step, reps))]
    if pool is None:
        return [(*row, None) for row in out]
    t_act = pool.binary_act(kernels.bias_softplus, W, b, h, d, cols, counts, flags)
    t_act.call[0] = x.ctypes.data
    t_grad = pool.binary_grad(g, cols, counts, dW, starts, ptr, rows)
    return [(*out[0], median_time(lambda: pool.run(t_act), as_in_a_step, reps)),
            (*out[1], median_time(lambda: pool.run(t_grad), as_in_a_step, reps))]


def density_table(reps: int) -> list[tuple[float, float, float, float, float]]:
    """The first layer at batch 100 on random 0/1 data with a given share of ones: (share,
    BLAS forward, sums forward, BLAS backward, sums backward) in seconds, the sums on BLAS's
    threads where the pool exists (as the engine runs them), as in a step. Where the sums stop
    winning is why the engine takes them only up to ``fast.MAX_ONES_FRACTION``."""
    pool = blas_pool.get()
    B, D, H = 100, 784, 500
    rng = np.random.default_rng(1)
    W, b = (0.05 * rng.standard_normal((D, H))).astype(F32), np.zeros(H, F32)
    g, dW = rng.standard_normal((B, H), dtype=F32), np.empty((D, H), F32)
    h, d = np.empty((B, H), F32), np.empty((B, H), F32)
    cols, counts = np.empty((B, D), np.int32), np.empty(B, np.int64)
    starts, ptr, rows = np.empty((8, B), np.int64), np.empty(D + 8, np.int64), np.empty(
        B * D, np.int32)
    flags = np.ones(8, np.int64)
    flush, A, Wm, mo = (np.empty(8_000_000, F32), rng.random((100, 500), dtype=F32),
                        rng.random((500, 500), dtype=F32), np.empty((100, 500), F32))

    def as_in_a_step():
        flush.fill(1.0)
        np.matmul(A, Wm, out=mo)

    def times(x):  # (BLAS forward, sums forward, BLAS backward, sums backward)
        kernels.binary_rows(x, cols, counts, x.size)
        if pool is not None:
            act = pool.bias_act(kernels.bias_softplus, h, b, d)
            t_act = pool.binary_act(kernels.bias_softplus, W, b, h, d, cols, counts, flags)
            t_act.call[0] = x.ctypes.data
            t_grad = pool.binary_grad(g, cols, counts, dW, starts, ptr, rows)
            fns = (lambda: (np.matmul(x, W, out=h), pool.run(act)), lambda: pool.run(t_act),
                   lambda: pool.run(t_grad))
        else:
            fns = (lambda: (np.matmul(x, W, out=h), kernels.bias_softplus(h, b, d)),
                   lambda: (kernels.binary_rows(x, cols, counts, x.size),
                            kernels.binary_bias_act(W, cols, counts, b, h, d, 0)),
                   lambda: kernels.binary_weight_grad(g, cols, counts, 0, D, dW, starts[0],
                                                      ptr, rows))
        blas_f, sums_f, sums_b = (median_time(f, as_in_a_step, reps) for f in fns)
        blas_b = median_time(lambda: np.matmul(x.T, g, out=dW), as_in_a_step, reps)
        return blas_f, sums_f, blas_b, sums_b

    return [(share, *times((rng.random((B, D)) < share).astype(F32)))
            for share in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)]


# --------------------------------------------------------------------------- data
def data_table(reps: int) -> list[tuple[str, float]]:
    """One dynamically binarised batch of 100: the NumPy passes it used to take, the fused
    kernel, and the uniform draws both need (the generator's stream fixes the draws: they stay
    NumPy's)."""
    from numpyvae.data import load_mnist
    images = load_mnist("train")[0]
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(images))[:100]
    table = (np.arange(256) / 255).astype(F32)
    u, x, x8 = rng.random((100, 784), dtype=F32), np.empty((100, 784), F32), np.empty(
        (100, 784), np.uint8)

    def numpy_passes():
        np.take(images, rows, axis=0, out=x8, mode="clip")
        np.take(table, x8, out=x, mode="clip")
        np.greater(x, u, out=x)

    return [("gather, lookup, compare: NumPy passes", median_time(numpy_passes, reps=reps)),
            ("the same: kernels.gather_binarize", median_time(
                lambda: kernels.gather_binarize(images, rows, table, u, x), reps=reps)),
            ("the uniform draws: rng.random(float32)", median_time(
                lambda: rng.random(dtype=F32, out=u), reps=reps))]


# --------------------------------------------------------------------------- dispatch
@njit(cache=False)
def _noop1(a):
    return 0


@njit(cache=False)
def _noop6(a, b, c, d, e, f):
    return 0


@cfunc(_ARGS, nogil=True, cache=False)
def _noop_chunk(a):
    pass


def dispatch_table(reps: int) -> list[tuple[str, float]]:
    a = np.zeros((100, 500), F32)
    W, out = np.zeros((500, 20), F32), np.zeros((100, 20), F32)
    tiny_a, tiny_b, tiny_out = np.zeros((2, 2), F32), np.zeros((2, 2), F32), np.zeros((2, 2), F32)

    def per_call(fn, n=2000):
        def many():
            for _ in range(n):
                fn()
        return median_time(many, reps=max(3, reps // 5)) / n

    rows = [("Python function call", per_call(lambda: None)),
            ("Numba call, 1 array argument", per_call(lambda: _noop1(a))),
            ("Numba call, 6 array arguments", per_call(lambda: _noop6(a, a, a, a, a, a))),
            ("np.matmul(out=) of 2x2 float32", per_call(lambda: np.matmul(tiny_a, tiny_b,
                                                                          out=tiny_out))),
            ("np.matmul(out=) (100x500) @ (500x20)", per_call(lambda: np.matmul(a, W, out=out),
                                                               200))]
    pool = blas_pool.get()
    if pool is not None:
        task = blas_pool.Task("noop", _noop_chunk, lambda n: [[0]] * n, ())
        rows.append((f"kernels.pool run of an empty task on {pool.threads()} threads",
                     per_call(lambda: pool.run(task))))
    return rows


# --------------------------------------------------------------------------- the latent heads
def heads_table(B: int, reps: int) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(0)
    h = rng.random((B, 500), dtype=F32)
    Wm, Wl, W2 = (rng.random(s, dtype=F32) for s in ((500, 20), (500, 20), (500, 40)))
    om, ol, o2 = np.empty((B, 20), F32), np.empty((B, 20), F32), np.empty((B, 40), F32)
    gm, gl, g2 = np.empty((500, 20), F32), np.empty((500, 20), F32), np.empty((500, 40), F32)
    dx, second = np.empty((B, 500), F32), np.empty((B, 500), F32)

    def two_fwd():
        np.matmul(h, Wm, out=om)
        np.matmul(h, Wl, out=ol)

    def two_bwd():
        np.matmul(h.T, om, out=gm)
        np.matmul(h.T, ol, out=gl)
        np.matmul(om, Wm.T, out=dx)
        np.matmul(ol, Wl.T, out=second)
        np.add(dx, second, out=dx)

    def copied_fwd():  # [W_mu | W_logvar] assembled from separate arrays before the product
        np.copyto(W2[:, :20], Wm)
        np.copyto(W2[:, 20:], Wl)
        np.matmul(h, W2, out=o2)

    def one_bwd():  # as fast.FastEngine: one product for both weight gradients, one for dL/dh
        np.matmul(h.T, o2, out=g2)
        np.matmul(o2, W2.T, out=dx)

    def copied_bwd():  # the same, the weight gradients copied out to separate arrays
        one_bwd()
        np.copyto(gm, g2[:, :20])
        np.copyto(gl, g2[:, 20:])
    return [("forward: h @ W", median_time(two_fwd, reps=reps),
             median_time(lambda: np.matmul(h, W2, out=o2), reps=reps),
             median_time(copied_fwd, reps=reps)),
            ("backward: dW and dL/dh", median_time(two_bwd, reps=reps),
             median_time(one_bwd, reps=reps), median_time(copied_bwd, reps=reps))]


# --------------------------------------------------------------------------- input gradients
def input_grad_table(reps: int) -> list[tuple[int, int, float, float, bool]]:
    """(DENSE-4) as a step makes it, then the layer below's backward_bias: dL/dh = G W^T
    straight into (B, H), against W G^T into (H, B) transposed back by
    ``backward_bias_transposed`` (what ``fast`` does below ``TRANSPOSED_MAX_ROWS`` rows).
    Rows: (batch, columns of G, direct s, transposed s, bitwise the same)."""
    rng = np.random.default_rng(0)
    rows = []
    H = 500
    for K in (40, 128, 256, 500, 784):
        W = (rng.standard_normal((H, K)) * 0.05).astype(F32)
        for B in (16, 32, 64, 100, 128, 256, 512):
            g = rng.standard_normal((B, K)).astype(F32)
            dact = rng.random((B, H), dtype=F32)
            dh, dh_t, db = np.empty((B, H), F32), np.empty((H, B), F32), np.empty(H, F32)

            def direct(g=g, W=W, dh=dh, dact=dact, db=db):
                np.matmul(g, W.T, out=dh)
                kernels.backward_bias(dh, dact, db)

            def transposed(g=g, W=W, dh=dh, dh_t=dh_t, dact=dact, db=db):
                np.matmul(W, g.T, out=dh_t)
                kernels.backward_bias_transposed(dh_t, dact, db, dh)
            direct()
            first = dh.copy(), db.copy()
            transposed()
            same = np.array_equal(first[0], dh) and np.array_equal(first[1], db)
            times = {"d": [], "t": []}
            for _ in range(3):  # alternating, median of medians
                times["d"].append(median_time(direct, reps=reps))
                times["t"].append(median_time(transposed, reps=reps))
            rows.append((B, K, statistics.median(times["d"]), statistics.median(times["t"]),
                         same))
    return rows


# --------------------------------------------------------------------------- vectorisation
VECTORISE = """
import re, sys, numpy as np
from numpyvae import kernels
from numpyvae.model import VAE
for kw in ({}, {"activation": "tanh"}, {"activation": "relu"}):
    VAE(backend="numba", seed=0, **kw).step(
        (np.random.default_rng(0).random((100, 784)) < 0.2).astype(np.float32))
for name in sorted(dir(kernels)):
    k = getattr(kernels, name)
    if not hasattr(k, "inspect_asm"):
        continue
    for sig, asm in k.inspect_asm().items():
        if "float32" not in str(sig):
            continue
        packed = len(re.findall(r"\\tv\\w+ps\\s[^\\n]*%[yz]mm", asm))
        scalar = len(re.findall(r"\\tv\\w+ss\\s", asm))
        calls = len(re.findall(r"\\tcall", asm))
        print(name, packed, scalar, calls)
        break
"""


def vectorise_table() -> list[list[str]]:
    """Compiled in a fresh process with an empty cache (inspect_asm needs fresh compiles)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", VECTORISE], env=env, check=True,
                             capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    reps = 9 if args.quick else 41
    pool = blas_pool.get()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "unknown")
    print(f"# The parts of a training step{' (--quick)' if args.quick else ''}\n")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; kernels.pool: "
          + (f"BLAS threads: {pool.threads()}" if pool else "not available") + "\n")

    print("## Adam, 1,316,824 float32 parameters (37 MB of loads and stores), as in a step\n")
    print("| how | ms | GB/s |\n|---|---|---|")
    for name, t in adam_table(reps):
        print(f"| {name} | {t * 1e3:.3f} | {7 * 4 * 1_316_824 / t / 1e9:.0f} |")

    print("\n## The elementwise kernels of a step, right after a product (us per call)\n")
    print("| batch | kernel | values | serial | pooled | serial ns/value |\n"
          "|---|---|---|---|---|---|")
    for B in (100, 512):
        for name, n, ts, tp in step_kernels(B, reps):
            pooled = f"{tp * 1e6:.1f}" if tp is not None else "-"
            print(f"| {B} | {name} | {n} | {ts * 1e6:.1f} | {pooled} | {ts * 1e9 / n:.2f} |")

    print("\n## The first layer on binarised MNIST: BLAS or sums of rows (DENSE-5), as in a "
          "step (us)\n")
    print("| batch | pass | BLAS | sums, serial | sums, on BLAS's threads |\n|---|---|---|---|---|")
    for B in (8, 32, 100, 512):
        for name, tb, ts, tp in binary_table(B, reps):
            pooled = f"{tp * 1e6:.1f}" if tp is not None else "-"
            print(f"| {B} | {name} | {tb * 1e6:.1f} | {ts * 1e6:.1f} | {pooled} |")

    print("\n## The first layer at batch 100 on 0/1 data with more or fewer ones (us)\n")
    print("| share of ones | forward, BLAS | forward, sums | backward, BLAS | backward, sums |\n"
          "|---|---|---|---|---|")
    for share, fb, fs, bb, bs in density_table(reps):
        print(f"| {share:.2f} | {fb * 1e6:.1f} | {fs * 1e6:.1f} | {bb * 1e6:.1f} | "
              f"{bs * 1e6:.1f} |")

    print("\n## A dynamically binarised batch of 100 (us)\n")
    print("| part | us |\n|---|---|")
    for name, t in data_table(reps * 5):
        print(f"| {name} | {t * 1e6:.1f} |")

    print("\n## What a call costs (us)\n")
    print("| call | us |\n|---|---|")
    for name, t in dispatch_table(reps):
        print(f"| {name} | {t * 1e6:.2f} |")

    print("\n## The latent heads at batch 100: two 500 -> 20 products or one 500 -> 40 (us)\n")
    print("One product as the engine does it: W_mu and W_logvar are the two halves of one "
          "(500, 40) block of the parameter buffer (and so are their gradients). The last "
          "column instead copies separate arrays into such a block before the product (and "
          "the gradients out after it): the copy's cache lines must then cross to BLAS's "
          "other thread.\n")
    print("| pass | two products | one product | one product, with copies |\n|---|---|---|---|")
    for name, two, one, copied in heads_table(100, reps * 5):
        print(f"| {name} | {two * 1e6:.1f} | {one * 1e6:.1f} | {copied * 1e6:.1f} |")

    print("\n## Input gradients: G W^T, or W G^T transposed back (us)\n")
    print("dL/dh = G W^T (DENSE-4) for a layer of 500 units, then the layer below's "
          "backward_bias, as a step does them: straight into (B, 500), or computed transposed, "
          "W G^T, and transposed back (``kernels.backward_bias_transposed``). The engine takes "
          "the second below ``fast.TRANSPOSED_MAX_ROWS`` = "
          f"{fast.TRANSPOSED_MAX_ROWS} rows for G of at least ``TRANSPOSED_MIN_COLS`` = "
          f"{fast.TRANSPOSED_MIN_COLS} columns.\n")
    print("| batch | columns of G | G W^T | W G^T, transposed back | speed-up | bitwise |\n"
          "|---|---|---|---|---|---|")
    for B, K, td, tt, same in input_grad_table(reps):
        print(f"| {B} | {K} | {td * 1e6:.1f} | {tt * 1e6:.1f} | {td / tt:.2f}x | "
              f"{'yes' if same else 'no'} |")

    print("\n## Vectorised? (float32 kernels: packed ymm/zmm instructions, scalar ones, calls)\n")
    print("| kernel | packed | scalar | calls |\n|---|---|---|---|")
    for row in vectorise_table():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
