"""Optimisers acting in place on flat parameter buffers.

``step(theta, grad)`` updates the 1-D array ``theta`` in place from the 1-D array ``grad``.
The NumPy code here is the reference; ``numpyvae.fast.FastAdam`` (``kernels.adam_step``) is the
fused twin. Which one a model uses is its engine's choice (``ReferenceEngine.Adam``,
``FastEngine.Adam``); this module knows nothing of engines or backends.
"""

from __future__ import annotations

import math

import numpy as np


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _check_beta(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; the usual value is 0.9/0.999")
    return value


class SGD:
    """Plain stochastic gradient descent: theta <- theta - lr * g."""

    def __init__(self, lr: float = 1e-3):
        self.lr = _check_positive("learning rate", lr)
        self.t = 0

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        self.t += 1
        ### BEGIN SOLUTION
        ### HINT: update theta in place: theta -= ...
        theta -= self.lr * grad  # (SGD-1)
        ### END SOLUTION

    def state(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, dtype=np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, in place, no allocation per step.

    The moments ``m`` and ``v`` are flat buffers of the parameters' size and dtype.
    """

    def __init__(
        self,
        size: int,
        dtype="float32",
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ):
        self.lr = _check_positive("learning rate", lr)
        self.beta1 = _check_beta("beta1", beta1)
        self.beta2 = _check_beta("beta2", beta2)
        self.eps = _check_positive("Adam epsilon", eps)
        self.m = np.zeros(size, dtype=dtype)
        self.v = np.zeros(size, dtype=dtype)
        self._tmp = np.zeros(size, dtype=dtype)
        self.t = 0

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        b1, b2, tmp = self.beta1, self.beta2, self._tmp
        self.t += 1
        ### BEGIN SOLUTION
        ### HINT: update the moments self.m and self.v, then theta in place (theta -= ...);
        ### HINT: the step number t is self.t
        self.m *= b1
        np.multiply(grad, 1.0 - b1, out=tmp)
        self.m += tmp  # (ADAM-1)
        self.v *= b2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1.0 - b2
        self.v += tmp  # (ADAM-2)
        # (ADAM-3) folded into scalars: m_hat = m / c1, sqrt(v_hat) = sqrt(v) / sqrt(c2)
        c1 = 1.0 - b1**self.t
        c2 = 1.0 - b2**self.t
        np.sqrt(self.v, out=tmp)
        tmp *= 1.0 / math.sqrt(c2)
        tmp += self.eps
        np.divide(self.m, tmp, out=tmp)
        tmp *= self.lr / c1
        theta -= tmp  # (ADAM-4)
        ### END SOLUTION

    def state(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, dtype=np.int64), "m": self.m, "v": self.v}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if state["m"].shape != self.m.shape or state["v"].shape != self.v.shape:
            raise ValueError(
                f"optimiser state has {state['m'].shape[0]} moments, the model has {self.m.size}"
            )
        self.t = int(state["t"])
        self.m[...] = state["m"]
        self.v[...] = state["v"]
