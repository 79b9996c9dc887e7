"""Numba options shared by every kernel, and where their compiled code is cached."""

from __future__ import annotations

import os

import numba


def _ensure_cache_dir() -> None:
    """``cache=True`` writes next to this file; if that is read-only, use ~/.cache instead.

    Must run before the decorators below (Numba picks the cache location at decoration time).
    An explicit ``NUMBA_CACHE_DIR`` always wins.
    """
    if numba.config.CACHE_DIR:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(here, "__pycache__")
    target = pycache if os.path.isdir(pycache) else here
    if not os.access(target, os.W_OK):
        home_cache = os.path.join(os.path.expanduser("~"), ".cache", "numpyvae", "numba")
        numba.config.CACHE_DIR = home_cache


_ensure_cache_dir()

JIT = {"cache": True, "error_model": "numpy", "nogil": True}
# "contract" alone: a*b + c may become one FMA instruction (rounded once instead of twice). It
# never changes NaN/inf behaviour or the order of a sum; it only touches the polynomial-heavy
# kernels, which are compared with the reference to a stated tolerance, not bitwise.
JIT_FMA = dict(JIT, fastmath={"contract"})
