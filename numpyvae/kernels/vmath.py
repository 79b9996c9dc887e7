"""Vectorisable float32 exp, log1p and tanh for use inside Numba kernels.

Inside a Numba loop, ``np.exp``/``np.log1p`` become scalar libm calls that block vectorisation,
so float32 uses the short polynomials below (<= 2 ulp, tested against NumPy); float64 uses
``math.exp``/``math.log1p``/``math.tanh``, where accuracy, not speed, is the point (gradient
checks). ``exp_array``/``log1p_array``/``tanh_array`` exist only so tests can measure them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._jit import JIT_FMA

F32 = np.float32
_LOG2E = F32(1.4426950408889634)
_LN2_HI = F32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO; n * _LN2_HI is exact for |n| < 2**12
_LN2_LO = F32(-2.12194440e-4)
_EXP_MAX = F32(88.72283)  # above: exp overflows float32
_EXP_MIN = F32(-104.0)  # below: exp rounds to 0 even as a subnormal
_INF32 = F32(np.inf)


# =========================================================================== scalar helpers
# Each helper is a plain function used through an @overload: float32 gets the polynomial,
# float64 gets libm. Numba inlines them into the kernels' loops, which then vectorise.
def _exp32(x):
    """exp(x) for float32: x = n ln2 + r, |r| <= ln2/2, exp(x) = 2^n * exp(r).

    exp(r) is its Taylor series to r^7 (truncation < 5e-9 relative); 2^n is built from its
    exponent bits, split in two factors so that subnormal results (x < -87.3) come out right.
    """
    xc = min(max(x, _EXP_MIN), _EXP_MAX)
    n = np.floor(xc * _LOG2E + F32(0.5))
    r = (xc - n * _LN2_HI) - n * _LN2_LO  # Cody & Waite: r to ~full precision
    p = F32(1.0 / 5040.0)
    p = p * r + F32(1.0 / 720.0)
    p = p * r + F32(1.0 / 120.0)
    p = p * r + F32(1.0 / 24.0)
    p = p * r + F32(1.0 / 6.0)
    p = p * r + F32(0.5)
    p = (p * r) * r + r + F32(1.0)
    k = np.int32(n)
    k1 = k >> 1
    s1 = np.int32((k1 + 127) << 23).view(np.float32)  # 2^k1 from its exponent bits
    s2 = np.int32((k - k1 + 127) << 23).view(np.float32)
    y = (p * s1) * s2
    if x > _EXP_MAX:
        y = _INF32
    if x != x:  # NaN in, NaN out
        y = x
    return y


def _log1p_unit32(e):
    """log(1 + e) for float32 e in [0, 1] (the only range the kernels need: e = exp(-|a|)).

    For e >= 1/2, log(1 + e) = ln 2 + log1p(f) with f = (e - 1)/2 (exact), else f = e; so
    f is in [-1/4, 1/2). Then log1p(f) = 2 atanh(s), s = f / (2 + f), summed as
    f - (f^2/2 - s (f^2/2 + R)) with R the atanh series past its first term: the leading f is
    exact and the rounding of s only touches a small correction (FreeBSD's log1pf form).
    """
    big = e >= F32(0.5)
    f = (e - F32(1.0)) * F32(0.5) if big else e
    k = F32(1.0) if big else F32(0.0)
    s = f / (F32(2.0) + f)
    z = s * s
    R = F32(2.0 / 11.0)
    R = R * z + F32(2.0 / 9.0)
    R = R * z + F32(2.0 / 7.0)
    R = R * z + F32(2.0 / 5.0)
    R = R * z + F32(2.0 / 3.0)
    R = R * z
    hfsq = F32(0.5) * f * f
    y = f - (hfsq - s * (hfsq + R))
    return k * _LN2_HI + (y + k * _LN2_LO)


def _tanh32(a):
    """tanh(a) for float32: an odd polynomial for |a| < 0.625 (Cephes tanhf), else
    (1 - e)/(1 + e) with e = exp(-2|a|) <= 0.29, where nothing cancels."""
    ax = abs(a)
    z = a * a
    p = F32(-5.70498872745e-3)
    p = p * z + F32(2.06390887954e-2)
    p = p * z + F32(-5.37397155531e-2)
    p = p * z + F32(1.33314422036e-1)
    p = p * z + F32(-3.33332819422e-1)
    small = (p * z) * a + a
    e = vexp(F32(-2.0) * ax)
    big = (F32(1.0) - e) / (F32(1.0) + e)
    big = big if a >= F32(0.0) else -big
    return small if ax < F32(0.625) else big


def vexp(x):
    """exp(x), vectorisable in float32 (used inside kernels only)."""
    raise NotImplementedError("vexp is only callable from inside Numba kernels")


def vlog1p(e):
    """log(1 + e) for e in [0, 1], vectorisable in float32 (used inside kernels only)."""
    raise NotImplementedError("vlog1p is only callable from inside Numba kernels")


def vtanh(a):
    """tanh(a), vectorisable in float32 (used inside kernels only)."""
    raise NotImplementedError("vtanh is only callable from inside Numba kernels")


@overload(vexp, inline="always")
def _vexp_overload(x):
    if x == types.float32:
        return _exp32
    return lambda x: math.exp(x)


@overload(vlog1p, inline="always")
def _vlog1p_overload(e):
    if e == types.float32:
        return _log1p_unit32
    return lambda e: math.log1p(e)


@overload(vtanh, inline="always")
def _vtanh_overload(a):
    if a == types.float32:
        return _tanh32
    return lambda a: math.tanh(a)


@njit(**JIT_FMA)
def exp_array(x, out):
    """out = vexp(x) elementwise, 1-D: lets tests measure the helper's accuracy."""
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@njit(**JIT_FMA)
def log1p_array(x, out):
    """out = vlog1p(x) elementwise for x in [0, 1], 1-D."""
    for i in range(x.shape[0]):
        out[i] = vlog1p(x[i])


@njit(**JIT_FMA)
def tanh_array(x, out):
    """out = vtanh(x) elementwise, 1-D."""
    for i in range(x.shape[0]):
        out[i] = vtanh(x[i])
