"""Numba kernels: the maths of ``numpyvae.ops``, fused into single passes over memory.

Read each kernel next to the reference ops its docstring names; ``tests/test_kernels.py``
proves they agree in float32 and float64. Conventions:

* Matrix products are *not* here: ``numpyvae.fast`` hands them to BLAS. A kernel starts where a
  product ends, e.g. ``a = x @ W`` is finished by ``bias_softplus`` which adds the bias, applies
  the activation and stores the activation's derivative for the backward pass, in one pass.
* Kernels work in place and allocate nothing; all buffers come from the caller (the one
  exception is the teaching ``matmul``, which packs a transposed copy of its right operand).
* float32 stays float32: constants are cast to the array's dtype (``x.dtype.type(0.5)``), because
  a bare ``0.5`` is a float64 literal to Numba and would promote the whole expression.
* ``error_model="numpy"``: division by zero gives inf/NaN as in NumPy instead of raising, which
  also lets LLVM vectorise loops that divide.
* ``fastmath`` is limited to ``contract`` (fused multiply-add) in the polynomial-heavy kernels.
  Every kernel keeps IEEE semantics (NaN and inf propagate as in the reference; no ``nnan``,
  ``ninf``) and the reference's order of operations; kernels without FMA (Adam, ReLU, the
  backward multiply) are bitwise equal to ``ops``/``optim``. ``reassoc`` would have vectorised
  the row sums for us, but it also lets LLVM fold the two-constant range reduction inside
  ``_exp32`` back into one (measured: 4.5 ulp instead of 1 near x = -87, and inf just below
  the overflow threshold); the row sums use eight explicit partial sums instead (``_row_sum``).
* Serial on purpose: OpenBLAS keeps its own threads spinning between products, and
  ``parallel=True`` kernels fight them for the two cores (measured 17x slower on the reference
  machine).
* Transcendentals: inside a Numba loop, ``np.exp``/``np.log1p`` become scalar libm calls that
  block vectorisation, so float32 uses the short polynomials ``vexp``/``vlog1p``/``vtanh`` below
  (<= 2 ulp, tested against NumPy); float64 uses ``math.exp``/``math.log1p``/``math.tanh``, where
  accuracy, not speed, is the point (gradient checks).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, types
from numba.extending import overload


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

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}
# "contract" alone: a*b + c may become one FMA instruction (rounded once instead of twice). It
# never changes NaN/inf behaviour or the order of a sum; it only touches the polynomial-heavy
# kernels, which are compared with the reference to a stated tolerance, not bitwise.
_JIT_FMA = dict(_JIT, fastmath={"contract"})

F32 = np.float32
_LOG2E = F32(1.4426950408889634)
_LN2_HI = F32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO; n * _LN2_HI is exact for |n| < 2**12
_LN2_LO = F32(-2.12194440e-4)
_EXP_MAX = F32(88.72283)  # above: exp overflows float32
_EXP_MIN = F32(-104.0)  # below: exp rounds to 0 even as a subnormal
_INF32 = F32(np.inf)
LOG_2PI = math.log(2.0 * math.pi)


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


@njit(**_JIT_FMA)
def exp_array(x, out):
    """out = vexp(x) elementwise, 1-D: lets tests measure the helper's accuracy."""
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@njit(**_JIT_FMA)
def log1p_array(x, out):
    """out = vlog1p(x) elementwise for x in [0, 1], 1-D."""
    for i in range(x.shape[0]):
        out[i] = vlog1p(x[i])


@njit(**_JIT_FMA)
def tanh_array(x, out):
    """out = vtanh(x) elementwise, 1-D."""
    for i in range(x.shape[0]):
        out[i] = vtanh(x[i])


@njit(**_JIT)
def _row_sum(t):
    """Sum of a 1-D array with eight partial sums: vectorises without ``reassoc``."""
    n = t.shape[0]
    zero = t.dtype.type(0.0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += t[j]
        s1 += t[j + 1]
        s2 += t[j + 2]
        s3 += t[j + 3]
        s4 += t[j + 4]
        s5 += t[j + 5]
        s6 += t[j + 6]
        s7 += t[j + 7]
    for j in range(n8, n):
        s0 += t[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


# =========================================================================== dense + activation
@njit(**_JIT_FMA)
def bias_softplus(h, b, dact):
    """Fuses ops.dense_forward's bias add + ops.softplus_forward + ops.softplus_backward's
    derivative: (DENSE-1) (ACT-1) (ACT-2) (ACT-3).

    h (B, H): in, x @ W; out, softplus(x @ W + b). b (H,). dact (B, H): out, sigma(a), the
    derivative kept for ``backward_bias``. Softplus and sigmoid share one exp(-|a|).
    """
    one, zero = h.dtype.type(1.0), h.dtype.type(0.0)
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            a = h[i, j] + b[j]  # (DENSE-1)
            e = vexp(-abs(a))
            h[i, j] = (a if a > zero else zero) + vlog1p(e)  # (ACT-1)
            dact[i, j] = (one if a >= zero else e) / (one + e)  # (ACT-2) = sigma(a) (ACT-3)


@njit(**_JIT)
def bias_relu(h, b, dact):
    """Fuses ops.dense_forward's bias add + ops.relu_forward + ops.relu_backward's
    derivative: (DENSE-1) (ACT-6).

    h (B, H): in, x @ W; out, max(x @ W + b, 0) (NaN stays NaN as in np.maximum).
    dact (B, H): out, 1[a > 0].
    """
    one, zero = h.dtype.type(1.0), h.dtype.type(0.0)
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            a = h[i, j] + b[j]  # (DENSE-1)
            h[i, j] = zero if a <= zero else a  # (ACT-6)
            dact[i, j] = one if a > zero else zero  # (ACT-6): relu'(a)


@njit(**_JIT_FMA)
def bias_tanh(h, b, dact):
    """Fuses ops.dense_forward's bias add + ops.tanh_forward + ops.tanh_backward's
    derivative: (DENSE-1) (ACT-5).

    h (B, H): in, x @ W; out, tanh(x @ W + b). dact (B, H): out, 1 - tanh^2.
    """
    one = h.dtype.type(1.0)
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            t = vtanh(h[i, j] + b[j])  # (DENSE-1)
            h[i, j] = t
            dact[i, j] = one - t * t  # (ACT-5)


@njit(**_JIT)
def backward_bias(dh, dact, db):
    """Fuses an activation's backward (ops.*_backward: dh * derivative) with
    ops.dense_backward's bias gradient: (ACT-2) (ACT-5) (ACT-6) (DENSE-3).

    dh (B, H): in, dL/dh; out, dL/da = dh * dact. dact (B, H) from ``bias_<activation>``.
    db (H,): out, the column sums of dL/da, accumulated row by row as NumPy's sum(axis=0) does.
    """
    db[:] = 0
    for i in range(dh.shape[0]):
        for j in range(dh.shape[1]):
            g = dh[i, j] * dact[i, j]  # (ACT-*): chain rule through the stored derivative
            dh[i, j] = g
            db[j] += g  # (DENSE-3)


# =========================================================================== losses
@njit(**_JIT_FMA)
def bernoulli_loss_grad(logits, b, x, inv_b, loss, db, tmp):
    """Fuses the bias add, ops.bce_with_logits_forward and ops.bce_with_logits_backward with
    dloss = 1/B, and dense_backward's bias gradient: (DENSE-1) (BER-2) (BER-3) (ELBO-3)
    (DENSE-3). One pass over the (B, D) logits, one exp(-|a|) per pixel.

    logits (B, D): in, h @ W; out, dL/da = (sigma(a) - x) / B with a = h @ W + b.
    x (B, D) targets in [0, 1]. inv_b: 1/B in the array's dtype. loss (B,): out, -log p(x|z)
    per example (nats). db (D,): out, bias gradient. tmp (D,): scratch for the row's terms.
    """
    one, zero = logits.dtype.type(1.0), logits.dtype.type(0.0)
    db[:] = 0
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            a = logits[i, j] + b[j]  # (DENSE-1)
            e = vexp(-abs(a))
            xi = x[i, j]
            tmp[j] = (a if a > zero else zero) - xi * a + vlog1p(e)  # (BER-2)
            g = inv_b * ((one if a >= zero else e) / (one + e) - xi)  # (BER-3) (ELBO-3)
            logits[i, j] = g
            db[j] += g  # (DENSE-3)
        loss[i] = _row_sum(tmp)


@njit(**_JIT_FMA)
def gaussian_loss_grad(mean, logvar, b_mean, b_logvar, x, inv_b, loss, db_mean, db_logvar, tmp):
    """Fuses the two heads' bias adds, ops.gaussian_nll_forward and ops.gaussian_nll_backward
    with dloss = 1/B, and both bias gradients: (DENSE-1) (GAU-1) (GAU-2) (GAU-3) (ELBO-3)
    (DENSE-3).

    mean, logvar (B, D): in, h @ W_mean and h @ W_logvar; out, dL/dmean and dL/dlogvar.
    x (B, D). loss (B,): out, -log N(x; mean, exp(logvar)) per example. db_mean, db_logvar (D,):
    out. tmp (D,): scratch.
    """
    one, half = mean.dtype.type(1.0), mean.dtype.type(0.5)
    log_2pi = mean.dtype.type(LOG_2PI)
    g_half = inv_b * half
    db_mean[:] = 0
    db_logvar[:] = 0
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            m = mean[i, j] + b_mean[j]  # (DENSE-1)
            lv = logvar[i, j] + b_logvar[j]  # (DENSE-1)
            inv_var = vexp(-lv)
            diff = x[i, j] - m
            d2v = diff * diff * inv_var
            tmp[j] = half * (log_2pi + lv + d2v)  # (GAU-1)
            gm = inv_b * (-diff * inv_var)  # (GAU-2) (ELBO-3)
            glv = g_half * (one - d2v)  # (GAU-3) (ELBO-3)
            mean[i, j] = gm
            logvar[i, j] = glv
            db_mean[j] += gm  # (DENSE-3)
            db_logvar[j] += glv  # (DENSE-3)
        loss[i] = _row_sum(tmp)


# =========================================================================== latent layer
@njit(**_JIT)
def latent_forward(mu, logvar, b_mu, b_logvar, eps, z, std, kl):
    """Fuses the heads' bias adds, ops.reparameterize_forward and
    ops.kl_standard_normal_forward: (DENSE-1) (REP-1) (KL-1).

    mu, logvar (B, J): in, h @ W_mu and h @ W_logvar; out, with the biases added (kept for the
    backward pass). eps (B, J) ~ N(0, I). z, std (B, J): out. kl (B,): out, per example (nats).
    J is small (20), so libm's exp/expm1 cost nothing here and keep the KL exact near 0.
    """
    half = mu.dtype.type(0.5)
    for i in range(mu.shape[0]):
        s = mu.dtype.type(0.0)
        for j in range(mu.shape[1]):
            m = mu[i, j] + b_mu[j]  # (DENSE-1)
            lv = logvar[i, j] + b_logvar[j]  # (DENSE-1)
            mu[i, j] = m
            logvar[i, j] = lv
            sd = np.exp(half * lv)  # the standard deviation, not the variance
            std[i, j] = sd
            z[i, j] = m + sd * eps[i, j]  # (REP-1)
            s += half * (m * m + np.expm1(lv) - lv)  # (KL-1)
        kl[i] = s


@njit(**_JIT)
def latent_backward(dz, mu, logvar, std, eps, g_kl, dmu, dlogvar, db_mu, db_logvar):
    """Fuses ops.reparameterize_backward, ops.kl_standard_normal_backward with dkl = beta/B
    (added to the reparameterisation gradient) and both heads' bias gradients:
    (REP-2) (REP-3) (KL-2) (KL-3) (ELBO-3) (DENSE-3).

    dz (B, J): dL/dz from the decoder. mu, logvar, std, eps (B, J) from ``latent_forward``.
    g_kl: beta / B in the array's dtype. dmu, dlogvar (B, J): out. db_mu, db_logvar (J,): out.
    """
    half = mu.dtype.type(0.5)
    g_half = g_kl * half
    db_mu[:] = 0
    db_logvar[:] = 0
    for i in range(dz.shape[0]):
        for j in range(dz.shape[1]):
            d = dz[i, j]
            gm = d + g_kl * mu[i, j]  # (REP-2) + (KL-2)
            glv = d * half * std[i, j] * eps[i, j]  # (REP-3)
            glv += g_half * np.expm1(logvar[i, j])  # + (KL-3)
            dmu[i, j] = gm
            dlogvar[i, j] = glv
            db_mu[j] += gm  # (DENSE-3)
            db_logvar[j] += glv  # (DENSE-3)


@njit(**_JIT)
def mean64(x):
    """The mean of a 1-D array, accumulated in float64 (batch means reported as Python floats)."""
    s = 0.0
    for i in range(x.shape[0]):
        s += np.float64(x[i])
    return s / x.shape[0]


# =========================================================================== optimiser
@njit(**_JIT)
def adam_step(theta, grad, m, v, b1, one_minus_b1, b2, one_minus_b2, inv_sqrt_c2, eps, step):
    """Fuses optim.Adam.step's seven array passes into one: (ADAM-1) (ADAM-2) (ADAM-3) (ADAM-4).

    theta, grad, m, v: flat (P,) buffers, updated in place. Scalars come in the buffers' dtype:
    inv_sqrt_c2 = 1/sqrt(1 - b2^t) and step = lr / (1 - b1^t) fold in the bias correction exactly
    as the reference does, in the same order, so the result is bitwise the reference's.
    """
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = m[i] * b1 + g * one_minus_b1  # (ADAM-1)
        vi = v[i] * b2 + (g * g) * one_minus_b2  # (ADAM-2)
        m[i] = mi
        v[i] = vi
        denom = np.sqrt(vi) * inv_sqrt_c2 + eps  # (ADAM-3): sqrt(v_hat) + eps
        theta[i] -= (mi / denom) * step  # (ADAM-4): m_hat / (sqrt(v_hat) + eps)


# =========================================================================== teaching matmul
@njit(cache=True, error_model="numpy", nogil=True, fastmath={"contract", "reassoc", "nsz"})
def matmul(a, b, out):
    """out = a @ b written by hand: a (M, K), b (K, N), out (M, N), any strides. For teaching
    and the benchmark table; ``numpyvae.fast`` uses BLAS, which is several times faster.

    Each entry is a dot product of a row of a with a column of b, so b is first packed
    transposed (one K x N copy: the only kernel that allocates) to make both contiguous in k.
    A 4 x 4 tile of out is then accumulated in 16 local variables, which LLVM keeps in vector
    registers: each step of k loads 4 + 4 numbers and does 16 multiply-adds, where the plain
    triple loop does 1 per 2 loads. ``reassoc`` lets LLVM split each sum over k into 8-wide
    partial sums (vectorisation); ``contract`` fuses multiply and add (FMA). Sums therefore run
    in another order than BLAS's: results agree to rounding, not bitwise.
    """
    M, K = a.shape
    N = b.shape[1]
    bt = np.ascontiguousarray(b.T)  # row j of bt is column j of b
    zero = out.dtype.type(0.0)
    M4, N4 = M - M % 4, N - N % 4
    for i in range(0, M4, 4):
        a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
        for j in range(0, N4, 4):
            b0, b1, b2, b3 = bt[j], bt[j + 1], bt[j + 2], bt[j + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for k in range(K):
                x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
                y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
                s20 += x2 * y0
                s21 += x2 * y1
                s22 += x2 * y2
                s23 += x2 * y3
                s30 += x3 * y0
                s31 += x3 * y1
                s32 += x3 * y2
                s33 += x3 * y3
            out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s00, s01, s02, s03
            out[i + 1, j], out[i + 1, j + 1], out[i + 1, j + 2], out[i + 1, j + 3] = (
                s10, s11, s12, s13)
            out[i + 2, j], out[i + 2, j + 1], out[i + 2, j + 2], out[i + 2, j + 3] = (
                s20, s21, s22, s23)
            out[i + 3, j], out[i + 3, j + 1], out[i + 3, j + 2], out[i + 3, j + 3] = (
                s30, s31, s32, s33)
    # the edges: last M % 4 rows (all columns), last N % 4 columns (other rows), one at a time
    for i in range(M):
        for j in range(N4 if i < M4 else 0, N):
            s = zero
            for k in range(K):
                s += a[i, k] * bt[j, k]
            out[i, j] = s
