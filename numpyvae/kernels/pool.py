"""Run a float32 kernel on BLAS's own threads: the second core, without a second thread pool.

Between two matrix products OpenBLAS's worker threads do not sleep: they spin, waiting for the
next product, for up to 2^28 cycles (``OPENBLAS_THREAD_TIMEOUT``). A kernel of ours running on
threads of our own (Numba's ``parallel=True``, or a Python thread) competes with them for the
cores; measured on the reference machine, a two-thread Numba Adam right after a product took
4.6-6.9 ms against 1.5 ms serial. Shortening the timeout cures that and slows every product
down instead (a step's products: 7.4 -> 10.1 ms with ``OPENBLAS_THREAD_TIMEOUT=4``).

OpenBLAS can run any C function on those same threads: ``gotoblas_pthread(n, function, args,
stride)`` calls ``function(args + i * stride)`` for i < n, i = 0 on the caller's thread and the
others on its workers, and returns when all are done. The spinning worker picks the work up at
once; nobody fights. The functions are Numba ``cfunc`` trampolines that rebuild each chunk's
arrays from raw pointers and call the serial kernels of ``fused.py`` on them.

Every pooled kernel gives each output element to exactly one chunk, computed by the same serial
kernel: results are bitwise those of the serial path, for any number of threads (checked by
``tests/test_pool.py``). Column sums, which would add in another order if split by rows, are a
separate serial pass (``column_sum``), in the serial kernels' order. (Split by columns instead,
they were slower: ``benchmarks/bench_parts.py``.)

``get()`` returns the pool, or None where it cannot work (no OpenBLAS, an OpenMP or Windows
build without the symbol, one BLAS thread) or is switched off (``NUMPYVAE_BLAS_POOL=0``); the
engine then runs every kernel serially, with the same results.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
from numba import carray, cfunc, types
from numba.extending import intrinsic

from .binary import binary_bias_act, binary_rows, binary_weight_grad
from .fused import (
    ACTIVATION_CODES,
    adam_step,
    bernoulli_rows,
    bias_act,
    bias_relu,
    bias_softplus,
    bias_tanh,
)

MIN_POOLED = 16_384  # values below which a kernel runs serially (the hand-off costs ~5 us)
# the first layer's sums of rows (binary.py) cost ~100 additions per value they write: they
# gain from two threads from 16 rows on (benchmarks/bench_parts.py, "The first layer")
MIN_POOLED_ROWS = 16
ALIGN = 16  # chunk boundaries of flat buffers, in float32 values: one 64-byte cache line
_ARGS = types.void(types.CPointer(types.int64))  # every trampoline: void f(int64 *args)
_TRAMPOLINE = {"nogil": True, "error_model": "numpy", "cache": True}


def _pointer_from(element):
    """An intrinsic turning an int64 address into a pointer to ``element`` (what carray
    needs)."""
    @intrinsic
    def cast(typingctx, address):
        sig = types.CPointer(element)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
        return sig, codegen
    return cast


_f32, _i32, _i64 = (_pointer_from(t) for t in (types.float32, types.int32, types.int64))


# =========================================================================== trampolines
# args: one row of int64 per chunk. Pointers are already offset to the chunk's first element.
@cfunc(_ARGS, **_TRAMPOLINE)
def _adam_chunk(a):
    """a = [theta, grad, m, v, scalars, ranges, k]: ``fused.adam_step`` (ADAM-1..4) on each of
    this chunk's k ranges of the flat buffers, ``ranges`` (k, 2) int64 [start, stop)."""
    s = carray(_f32(a[4]), (7,))
    k = a[6]
    ranges = carray(_i64(a[5]), (k, 2))
    for r in range(k):
        lo, n = ranges[r, 0], ranges[r, 1] - ranges[r, 0]
        adam_step(carray(_f32(a[0] + 4 * lo), (n,)), carray(_f32(a[1] + 4 * lo), (n,)),
                  carray(_f32(a[2] + 4 * lo), (n,)), carray(_f32(a[3] + 4 * lo), (n,)),
                  s[0], s[1], s[2], s[3], s[4], s[5], s[6])


@cfunc(_ARGS, **_TRAMPOLINE)
def _bias_act_chunk(a):
    """a = [h, b, dact, rows, H, act]: ``fused.bias_act`` on this chunk's rows (DENSE-1)
    (ACT-*). (One trampoline for every activation, chosen by number: closures over the kernel
    would not be found in Numba's cache and would compile again in every process.)"""
    rows, H = a[3], a[4]
    bias_act(carray(_f32(a[0]), (rows, H)), carray(_f32(a[1]), (H,)),
             carray(_f32(a[2]), (rows, H)), a[5])


_CODES = {bias_softplus: ACTIVATION_CODES["softplus"], bias_relu: ACTIVATION_CODES["relu"],
          bias_tanh: ACTIVATION_CODES["tanh"]}


@cfunc(_ARGS, **_TRAMPOLINE)
def _bernoulli_chunk(a):
    """a = [logits, b, call, loss, tmp, rows, D, first row]: ``fused.bernoulli_rows`` (BER-2)
    (BER-3) on this chunk's rows. ``call`` points at two int64 the caller writes before each
    run: the address of this call's x (the batch changes every step) and the bits of the
    float32 weight 1/B."""
    rows, D = a[5], a[6]
    call = carray(_i64(a[2]), (2,))
    x = carray(_f32(call[0] + 4 * a[7] * D), (rows, D))
    weight = carray(_f32(a[2] + 8), (1,))[0]
    bernoulli_rows(carray(_f32(a[0]), (rows, D)), carray(_f32(a[1]), (D,)), x, weight,
                   carray(_f32(a[3]), (rows,)), carray(_f32(a[4]), (D,)))


@cfunc(_ARGS, **_TRAMPOLINE)
def _binary_act_chunk(a):
    """a = [call, W, b, h, dact, cols, counts, flag, rows, D, H, first row, act, max ones]:
    on this chunk's rows of x, ``binary.binary_rows`` then ``binary.binary_bias_act``
    (DENSE-5) (DENSE-1) (ACT-*). ``call`` points at x's address, written by the caller before
    each run; ``flag`` gets 1 if the rows were 0/1 with at most ``max ones`` ones (and h, dact
    are done), else 0."""
    rows, D, H = a[8], a[9], a[10]
    x = carray(_f32(carray(_i64(a[0]), (1,))[0] + 4 * a[11] * D), (rows, D))
    cols, counts = carray(_i32(a[5]), (rows, D)), carray(_i64(a[6]), (rows,))
    flag = carray(_i64(a[7]), (1,))
    flag[0] = 0
    if binary_rows(x, cols, counts, a[13]):
        binary_bias_act(carray(_f32(a[1]), (D, H)), cols, counts, carray(_f32(a[2]), (H,)),
                        carray(_f32(a[3]), (rows, H)), carray(_f32(a[4]), (rows, H)), a[12])
        flag[0] = 1


@cfunc(_ARGS, **_TRAMPOLINE)
def _binary_grad_chunk(a):
    """a = [g, cols, counts, dW, starts, ptr, rows, B, D, H, lo, hi]:
    ``binary.binary_weight_grad`` for the pixels lo..hi-1 (DENSE-5), with this chunk's scratch."""
    B, D, H, lo, hi = a[7], a[8], a[9], a[10], a[11]
    binary_weight_grad(carray(_f32(a[0]), (B, H)), carray(_i32(a[1]), (B, D)),
                       carray(_i64(a[2]), (B,)), lo, hi, carray(_f32(a[3]), (D, H)),
                       carray(_i64(a[4]), (B,)), carray(_i64(a[5]), (hi - lo + 1,)),
                       carray(_i32(a[6]), (B * (hi - lo),)))


# =========================================================================== the pool
def _openblas():
    """(library, its get_num_threads) of the OpenBLAS NumPy uses, if it is a pthreads build
    with ``gotoblas_pthread``; else None."""
    try:
        from threadpoolctl import ThreadpoolController
        controllers = ThreadpoolController().select(internal_api="openblas").lib_controllers
    except Exception:  # threadpoolctl missing or unable to inspect this process
        return None
    for ctl in controllers:
        if getattr(ctl, "threading_layer", None) != "pthreads":
            continue
        try:
            lib = ctypes.CDLL(ctl.filepath)
            run = lib.gotoblas_pthread
        except (OSError, AttributeError):
            continue
        run.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        run.restype = ctypes.c_int
        return run, ctl.get_num_threads
    return None


def _split(lo: int, hi: int, n: int, unit: int = 1) -> list[tuple[int, int]]:
    """lo..hi in at most n consecutive ranges of ceil((hi - lo) / n) values, rounded up to a
    multiple of ``unit`` (the first ranges full, the last what is left); none if hi <= lo."""
    step = max(1, -(-(hi - lo) // unit // n) * unit)
    return [(a, min(hi, a + step)) for a in range(lo, hi, step)]


def adam_ranges(P: int, blocks=()):
    """n -> n lists of [start, stop) ranges covering 0..P exactly once (``BlasPool.adam``):
    every (start, rows, cols) block split by rows into n parts of ceil(rows / n) rows (the
    first to the caller's thread), the values between and after the blocks in n equal parts
    (at ``ALIGN`` boundaries)."""
    blocks = sorted((int(o), int(r), int(c)) for o, r, c in blocks)
    pos = 0
    for o, r, c in blocks:
        if o < pos or r < 1 or c < 1 or o + r * c > P:
            raise ValueError(f"weight blocks must lie inside the {P} values without "
                             f"overlapping; got {blocks}")
        pos = o + r * c

    def ranges(n: int) -> list[list[tuple[int, int]]]:
        parts: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        pos = 0
        for o, r, c in [*blocks, (P, 0, 0)]:  # (P, 0, 0): the values after the last block
            for i, piece in enumerate(_split(pos, o, n, ALIGN)):  # values before this block
                parts[i].append(piece)
            for i, (lo, hi) in enumerate(_split(0, r, n)):  # this block's rows
                parts[i].append((o + lo * c, o + hi * c))
            pos = o + r * c
        return [p for p in parts if p]
    return ranges


class Task:
    """One kernel call with fixed buffers, split into chunks; ``run(n)`` on n threads.

    The int64 argument rows are built once per thread count and kept, with the arrays they
    point into (so those stay alive as long as the task does).
    """

    def __init__(self, name: str, function, build, keep):
        self.name = name  # the serial kernel it splits, e.g. "adam_step"
        self.address = function.address
        self._build = build  # n -> (n, k) int64 array of argument rows
        self._keep = keep
        self._args: dict[int, np.ndarray] = {}

    def args(self, n: int) -> np.ndarray:
        """(chunks, fields) int64, chunks <= n."""
        a = self._args.get(n)
        if a is None:
            a = self._args[n] = np.array(self._build(n), dtype=np.int64)
        return a


class BlasPool:
    """``gotoblas_pthread`` and the tasks built for it. Use ``get()``."""

    def __init__(self, run, get_num_threads):
        self._run, self._threads = run, get_num_threads
        self.max_threads = 8

    def threads(self) -> int:
        """Threads a call uses now: OpenBLAS's current setting (threadpoolctl's limits are
        honoured), at most ``max_threads``."""
        return max(1, min(int(self._threads()), self.max_threads))

    def run(self, task: Task, n: int | None = None) -> None:
        """The task on n threads (default and at most ``threads()``: OpenBLAS started with one
        thread waits forever for a second); returns when every chunk is done. A task split
        into fewer chunks than n (few rows) uses one thread per chunk."""
        threads = self.threads()
        a = task.args(threads if n is None else max(1, min(n, threads)))
        self._run(a.shape[0], task.address, a.ctypes.data, a.shape[1] * 8)

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def _row_ranges(B: int, n: int):
        return _split(0, B, n)

    def adam(self, theta, grad, m, v, scalars, blocks=()) -> Task:
        """``fused.adam_step`` over flat float32 buffers; ``scalars`` (7,) float32 holds its
        seven scalar arguments, written by the caller before each run.

        ``blocks``: (start, rows, cols) of the weight matrices inside the flat buffers. Each
        is split between the threads by rows, as OpenBLAS splits the rows of the weight
        gradient x^T G it has just written (the caller's thread takes the first rows): each
        thread then updates the rows its own core wrote. The values outside them are split
        in equal parts. Without blocks, the whole buffer is split in equal parts. Every value
        is updated exactly once, so any split gives the serial result bit for bit.
        """
        ranges, kept = adam_ranges(theta.shape[0], blocks), {}

        def build(n):
            kept[n] = [np.array(p, np.int64).reshape(-1, 2) for p in ranges(n)]  # kept alive
            return [[x.ctypes.data for x in (theta, grad, m, v, scalars, r)] + [r.shape[0]]
                    for r in kept[n]]
        return Task("adam_step", _adam_chunk, build, (theta, grad, m, v, scalars, kept))

    def bias_act(self, kernel, h, b, dact) -> Task:
        """``kernel`` (one of fused.bias_<activation>) on (B, H) buffers, split by rows."""
        B, H = h.shape
        return Task(kernel.__name__, _bias_act_chunk, lambda n: [
            [h.ctypes.data + 4 * lo * H, b.ctypes.data, dact.ctypes.data + 4 * lo * H, hi - lo, H,
             _CODES[kernel]] for lo, hi in self._row_ranges(B, n)], (h, b, dact))

    def bernoulli(self, logits, b, loss) -> Task:
        """``fused.bernoulli_rows`` on (B, D) buffers, split by rows, each chunk with its own
        scratch row. Before each run, ``task.call`` (2,) int64 gets x's address and the
        weight: ``task.call[0] = x.ctypes.data; task.weight[0] = w`` (x C-contiguous float32)."""
        B, D = logits.shape
        scratch = np.empty((self.max_threads, D), np.float32)
        call = np.zeros(2, np.int64)
        task = Task("bernoulli_rows", _bernoulli_chunk, lambda n: [
            [logits.ctypes.data + 4 * lo * D, b.ctypes.data, call.ctypes.data,
             loss.ctypes.data + 4 * lo, scratch[i].ctypes.data, hi - lo, D, lo]
            for i, (lo, hi) in enumerate(self._row_ranges(B, n))],
            (logits, b, loss, scratch, call))
        task.call = call  # [0]: x's address
        task.weight = call[1:].view(np.float32)[:1]  # [0]: the float32 weight
        return task


    def binary_act(self, kernel, W, b, h, dact, cols, counts, flags,
                   max_fraction: float = 1.0) -> Task:
        """``binary.binary_rows`` + ``binary.binary_bias_act`` with ``kernel``'s activation on
        (B, D) 0/1 rows of x, split by rows; chunk i reports in flags[i] (1: its rows were
        0/1, with ones in at most ``max_fraction`` of their values). Before each run:
        ``task.call[0] = x.ctypes.data`` (x C-contiguous float32)."""
        B, H = h.shape
        D = W.shape[0]
        call = np.zeros(1, np.int64)
        task = Task(f"binary_{kernel.__name__}", _binary_act_chunk, lambda n: [
            [call.ctypes.data, W.ctypes.data, b.ctypes.data, h.ctypes.data + 4 * lo * H,
             dact.ctypes.data + 4 * lo * H, cols.ctypes.data + 4 * lo * D,
             counts.ctypes.data + 8 * lo, flags.ctypes.data + 8 * i, hi - lo, D, H, lo,
             _CODES[kernel], int(max_fraction * (hi - lo) * D)]
            for i, (lo, hi) in enumerate(self._row_ranges(B, n))],
            (W, b, h, dact, cols, counts, flags, call))
        task.call = call
        return task

    def binary_grad(self, g, cols, counts, dW, starts, ptr, rows) -> Task:
        """``binary.binary_weight_grad`` into dW (D, H), split by pixels (rows of dW). Scratch:
        starts (>= n, B) int64, ptr (>= D + n,) int64, rows (>= B D,) int32."""
        B, H = g.shape
        D = dW.shape[0]
        return Task("binary_weight_grad", _binary_grad_chunk, lambda n: [
            [g.ctypes.data, cols.ctypes.data, counts.ctypes.data, dW.ctypes.data,
             starts[i].ctypes.data, ptr.ctypes.data + 8 * (lo + i),
             rows.ctypes.data + 4 * B * lo, B, D, H, lo, hi]
            for i, (lo, hi) in enumerate(self._row_ranges(D, n))],
            (g, cols, counts, dW, starts, ptr, rows))


_POOL: BlasPool | None | bool = False  # False: not looked for yet


def get() -> BlasPool | None:
    """The process's pool, or None (see the module docstring)."""
    global _POOL
    if _POOL is False:
        found = None if os.environ.get("NUMPYVAE_BLAS_POOL", "1") == "0" else _openblas()
        _POOL = BlasPool(*found) if found else None
    return _POOL
