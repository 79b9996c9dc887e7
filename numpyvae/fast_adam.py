"""``FastAdam``: ``optim.Adam`` with its seven NumPy passes fused into one kernel, run on BLAS's
threads where that works (``kernels.pool``), split by the rows of the weight matrices when the
engine names them (``split_rows``). The result is bitwise the reference's."""

from __future__ import annotations

import math

import numpy as np

from . import kernels
from .kernels import pool as blas_pool
from .optim import Adam


class FastAdam(Adam):
    """``optim.Adam`` with its seven NumPy passes over the flat buffers fused into one.

    Same constructor, state and bias correction; the result is bitwise the reference's.
    """

    def __init__(self, size: int, dtype="float32", lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(size, dtype, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
        self._tmp = None  # the fused kernel needs no scratch buffer
        # float32: the update split between BLAS's threads (kernels/pool.py), bitwise the same
        self._scalars = np.empty(7, self.m.dtype)  # the kernel's scalars, for the pooled call
        self.blocks = ()  # weight matrices in the flat buffer, for the pooled split: split_rows
        self._attach_pool()

    def split_rows(self, blocks) -> None:
        """Split the pooled update by the rows of these weight matrices, (start, rows, cols)
        in the flat buffer, as BLAS splits their gradients (``kernels.pool``'s ``adam``): each
        thread updates what its own core wrote. Same results; with the two cores in different
        core complexes (no shared L3, ``kernels.handoff``) a step of the seed model is 1.09x
        faster at batch 100 (``benchmarks/bench_adam_split.py``). ``engines.build`` calls it
        with the fused engine's ``weight_blocks()``."""
        self.blocks = tuple((int(o), int(r), int(c)) for o, r, c in blocks)
        self._task = None

    def _attach_pool(self) -> None:
        self.pool = (blas_pool.get() if self.m.dtype == np.float32
                     and self.m.size >= blas_pool.MIN_POOLED else None)
        self._task = None

    def __getstate__(self) -> dict:
        """Pickle and deepcopy: the pool (a handle into this process's BLAS) is not copied;
        the copy finds its own (``__setstate__``)."""
        state = dict(self.__dict__)
        state.pop("pool", None)
        state.pop("_task", None)
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("blocks", ())  # pickled by numpyvae < 0.4.2
        self.__dict__.update(state)
        self._attach_pool()

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        m = self.m
        if theta.shape != m.shape or grad.shape != m.shape:
            raise ValueError(
                f"theta {theta.shape} and grad {grad.shape} must both have the optimiser's "
                f"shape {m.shape}"
            )
        if theta.dtype != m.dtype or grad.dtype != m.dtype:
            raise ValueError(
                f"theta is {theta.dtype} and grad {grad.dtype}; the optimiser was built for "
                f"{m.dtype}"
            )
        self.t += 1
        T = m.dtype.type  # scalars in the buffers' dtype, rounded as NumPy rounds them
        b1, b2 = self.beta1, self.beta2
        c1 = 1.0 - b1**self.t  # (ADAM-3): bias corrections, folded into two scalars
        c2 = 1.0 - b2**self.t
        scalars = (T(b1), T(1.0 - b1), T(b2), T(1.0 - b2), T(1.0 / math.sqrt(c2)), T(self.eps),
                   T(self.lr / c1))
        if self.pool is None:
            kernels.adam_step(theta, grad, m, self.v, *scalars)
            return
        task = self._task
        if task is None or task.theta is not theta or task.grad is not grad:
            task = self._task = self.pool.adam(theta, grad, m, self.v, self._scalars,
                                               self.blocks)
            task.theta, task.grad = theta, grad
        self._scalars[:] = scalars
        self.pool.run(task)
