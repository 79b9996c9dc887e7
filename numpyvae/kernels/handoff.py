"""How far apart BLAS's two threads are: the time one cache line takes to go from one to the other.

A training step shares every buffer between the two threads that run it (BLAS's, and our kernels
on them, ``pool``): what one thread wrote, the other reads next. On a chip whose cores share one
last-level cache that costs little. A server processor is built of several core complexes, each
with its own L3 cache (an AMD EPYC has up to 16); two cores in different complexes pass every
shared line through the chip's interconnect. A cloud virtual machine's "2 cores" are two
threads of the host that its scheduler may place in one complex or in two, and move between
them while a program runs; the program cannot tell, except by measuring.

``handoff_ns()`` measures it: the two threads of ``pool`` pass a counter back and forth, each
waiting for the other's write, and the time of one pass is the one-way latency between the
cores. Measured on the project's 2-core EPYC virtual machine (``benchmarks/cores.py``): 27-36 ns
when the two are in one complex, 160-200 ns when they are not, and in those stretches a training
step takes two to three times longer, and Adam, whose halves BLAS's other thread reads next, five
to seven times.

The waits are bounded: if the second chunk does not run alongside the first (one BLAS thread,
or a worker busy elsewhere) both give up after ``spin_limit`` loads and the result is None,
never a hang.
"""

from __future__ import annotations

import time

import numpy as np
from numba import cfunc, types
from numba.extending import intrinsic

from . import pool as blas_pool

_ARGS = types.void(types.CPointer(types.int64))
SPIN_LIMIT = 200_000_000  # loads a waiting thread makes before it gives up (~0.1-1 s)


@intrinsic
def _load_acquire(typingctx, address):
    """The int64 at ``address``, read from memory on every call (an atomic acquire load: the
    compiler may not keep it in a register across the loop that waits for it)."""
    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(types.int64), codegen


@intrinsic
def _store_release(typingctx, address, value):
    """Writes ``value`` to the int64 at ``address`` (an atomic release store)."""
    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
        builder.store_atomic(args[1], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(types.int64, types.int64), codegen


@cfunc(_ARGS, nogil=True, cache=True)
def _pingpong_chunk(a):
    """a = [counter, abort, rounds, role, limit]. Role 0 writes odd values and waits for the
    next even one; role 1 waits for each odd value and answers with the next even one. A thread
    that waits ``limit`` loads in vain writes 1 to ``abort``; both stop as soon as it is set."""
    counter, abort, rounds, role, limit = a[0], a[1], a[2], a[3], a[4]
    for r in range(rounds):
        mine = 2 * r + 1 + role  # role 0 writes 2r+1, role 1 writes 2r+2
        if role == 1:  # wait for the ping
            spins = 0
            while _load_acquire(counter) != mine - 1:
                spins += 1
                if spins > limit or _load_acquire(abort) != 0:
                    _store_release(abort, 1)
                    return
        _store_release(counter, mine)
        if role == 0:  # wait for the pong
            spins = 0
            while _load_acquire(counter) != mine + 1:
                spins += 1
                if spins > limit or _load_acquire(abort) != 0:
                    _store_release(abort, 1)
                    return


def handoff_ns(rounds: int = 20_000, pool=None, spin_limit: int = SPIN_LIMIT) -> float | None:
    """Nanoseconds for one cache line to pass from one of BLAS's threads to the other (half a
    round trip, averaged over ``rounds``); None without a pool of at least two threads, or if
    the two chunks did not run side by side."""
    pool = blas_pool.get() if pool is None else pool
    if pool is None or pool.threads() < 2:
        return None
    # counter and abort on cache lines of their own (and no other data near them)
    lines = np.zeros(3 * 8, np.int64)
    counter, abort = lines[8:9], lines[16:17]
    args = np.array([[counter.ctypes.data, abort.ctypes.data, rounds, role, spin_limit]
                     for role in (0, 1)], np.int64)
    t = time.perf_counter()
    pool._run(2, _pingpong_chunk.address, args.ctypes.data, args.shape[1] * 8)
    seconds = time.perf_counter() - t
    if abort[0] != 0 or counter[0] != 2 * rounds:
        return None
    return seconds / (2 * rounds) * 1e9
