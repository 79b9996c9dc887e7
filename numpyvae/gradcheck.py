"""Finite-difference gradient checking: a teaching tool, used by tests, notebooks and the CLI.

The central difference  (f(theta + h) - f(theta - h)) / 2h  has error O(h^2) from truncation
and O(eps_machine * |f| / h) from rounding. In float64 with h = 1e-6 both are around 1e-10
to 1e-8 relative, so an analytic gradient that is right agrees to ~1e-8 and one that is wrong
(a missing factor, a wrong sign, the variance used as the standard deviation) is off by ~1e-1.
In float32 rounding alone is ~1e-2: that is why checks run in float64.

Relative error of one parameter (a tensor):  max_i |a_i - n_i| / max(max_i |a_i|, max_i |n_i|)
i.e. the worst entry's error measured against the tensor's gradient scale. A tensor whose
gradient is exactly zero both ways has error 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

DEFAULT_TOL = 1e-6


@dataclasses.dataclass
class GradCheckRow:
    name: str
    shape: tuple[int, ...]
    max_rel_error: float
    n_checked: int
    tol: float

    @property
    def passed(self) -> bool:
        return bool(self.max_rel_error <= self.tol)


@dataclasses.dataclass
class GradCheckReport:
    rows: list[GradCheckRow]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def __getitem__(self, name: str) -> GradCheckRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def table(self) -> str:
        """A plain-text table: parameter, shape, entries checked, max relative error, verdict."""
        header = f"{'parameter':<16} {'shape':<12} {'checked':>8} {'max rel error':>14}  result"
        lines = [header, "-" * len(header)]
        for r in self.rows:
            verdict = "pass" if r.passed else f"FAIL (tol {r.tol:g})"
            shape = "x".join(map(str, r.shape)) or "scalar"
            lines.append(
                f"{r.name:<16} {shape:<12} {r.n_checked:>8} {r.max_rel_error:>14.2e}  {verdict}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, h: float = 1e-6, index=None
) -> np.ndarray:
    """Central differences of the scalar f() with respect to the array x, perturbed in place.

    ``index``: optional sequence of flat indices to check (others stay 0 in the result).
    x is restored exactly after each probe.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in range(x.size) if index is None else index:
        at = np.unravel_index(i, x.shape)  # any layout: a strided view of a block too
        old = x[at]
        x[at] = old + h
        f_plus = f()
        x[at] = old - h
        f_minus = f()
        x[at] = old
        grad[at] = (f_plus - f_minus) / (2.0 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray, index=None) -> float:
    """max |a - n| / max(max |a|, max |n|) over the checked entries (0 if both are all zero)."""
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    if index is not None:
        a, n = a[index], n[index]
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - n).max() / scale)


def check_gradients(
    f: Callable[[], float],
    inputs: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    *,
    h: float = 1e-6,
    tol: float = DEFAULT_TOL,
    max_entries: int | None = None,
    rng: np.random.Generator | None = None,
) -> GradCheckReport:
    """Compare analytic ``grads[name]`` with central differences of f() in each ``inputs[name]``.

    f() must recompute the scalar from the current contents of the input arrays, which are
    perturbed in place and restored. With ``max_entries``, that many entries per input are
    checked, chosen with ``rng`` (needed then).
    """
    rows = []
    for name, x in inputs.items():
        if x.dtype != np.float64:
            raise ValueError(
                f"{name} is {x.dtype}; finite differences need float64 (rounding in float32 is "
                "~1e-2 relative): build the model or arrays with dtype='float64'"
            )
        index = None
        if max_entries is not None and x.size > max_entries:
            if rng is None:
                raise ValueError("max_entries needs rng=np.random.default_rng(seed)")
            index = np.sort(rng.choice(x.size, size=max_entries, replace=False))
        numeric = numerical_gradient(f, x, h=h, index=index)
        err = relative_error(grads[name], numeric, index)
        n_checked = x.size if index is None else len(index)
        rows.append(GradCheckRow(name, tuple(x.shape), err, n_checked, tol))
    return GradCheckReport(rows)


def check_model(
    vae, X: np.ndarray, eps: np.ndarray, *, beta: float = 1.0, h: float = 1e-6,
    tol: float = DEFAULT_TOL, max_entries: int | None = None,
    rng: np.random.Generator | None = None,
) -> GradCheckReport:
    """Check every parameter gradient of the whole negative ELBO of ``vae`` (noise held fixed)."""
    _, grads = vae.loss_and_gradients(X, eps, beta=beta)

    def f() -> float:
        return vae.loss_and_gradients(X, eps, beta=beta)[0]

    return check_gradients(f, vae.parameters(), grads, h=h, tol=tol,
                           max_entries=max_entries, rng=rng)


def randomize_biases(vae, rng: np.random.Generator, scale: float = 0.1) -> None:
    """Give every bias of ``vae`` small random values, in place. Fresh models have zero biases,
    and a check at zero can miss a bias gradient that is wrong only away from zero."""
    for name, p in vae.parameters().items():
        if name.endswith(".b"):
            p[...] = rng.normal(0, scale, p.shape)
