"""Fused Numba kernels: the maths of ``numpyvae.ops``, fused into single passes over memory.

Read each kernel next to the reference ops its docstring names; ``tests/test_kernels.py``
proves they agree in float32 and float64. Conventions:

* Matrix products are *not* here: ``numpyvae.fast`` hands them to BLAS. A kernel starts where a
  product ends, e.g. ``a = x @ W`` is finished by ``bias_softplus`` which adds the bias, applies
  the activation and stores the activation's derivative for the backward pass, in one pass.
* Kernels work in place and allocate nothing; all buffers come from the caller (the one
  products are not here at all; ``teaching.matmul`` is apart).
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
  block vectorisation, so float32 uses the short polynomials ``vexp``/``vlog1p``/``vtanh``
  of ``vmath`` (<= 2 ulp, tested against NumPy); float64 uses ``math.exp``/``math.log1p``/
  ``math.tanh``, where accuracy, not speed, is the point (gradient checks).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..ops import LOG_2PI
from ._jit import JIT, JIT_FMA
from .vmath import vexp, vlog1p, vtanh


@njit(**JIT)
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
@njit(**JIT_FMA)
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


@njit(**JIT)
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


@njit(**JIT_FMA)
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


ACTIVATION_CODES = {"softplus": 0, "relu": 1, "tanh": 2}  # the ``act`` of ``bias_act``


@njit(**JIT)
def bias_act(h, b, dact, act):
    """``bias_softplus``, ``bias_relu`` or ``bias_tanh`` (act = 0, 1, 2: ``ACTIVATION_CODES``),
    for callers that take the activation as a number (compiled once, cached: no closures)."""
    if act == 0:
        bias_softplus(h, b, dact)
    elif act == 1:
        bias_relu(h, b, dact)
    else:
        bias_tanh(h, b, dact)


@njit(**JIT)
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


@njit(**JIT)
def backward_bias_transposed(dh_t, dact, db, dh):
    """``backward_bias`` for an input gradient that arrives transposed: dh_t (H, B) is
    (dL/dh)^T = W G^T, the transposed form of (DENSE-4) (``numpyvae.fast`` takes it for small
    batches, where BLAS computes it faster). Writes dh (B, H) = dL/da = dh_t^T * dact and db,
    bitwise what ``backward_bias`` gives for dh = dh_t^T: (ACT-2) (ACT-5) (ACT-6) (DENSE-3).
    """
    for i in range(dh.shape[0]):
        for j in range(dh.shape[1]):
            dh[i, j] = dh_t[j, i]  # (DENSE-4): dL/dh = (W G^T)^T
    backward_bias(dh, dact, db)  # (ACT-*) (DENSE-3)


# =========================================================================== losses
@njit(**JIT_FMA)
def bernoulli_loss_grad(logits, b, x, inv_b, loss, db, tmp):
    """Fuses the bias add, ops.bce_with_logits_forward and ops.bce_with_logits_backward with
    dloss = 1/B, and dense_backward's bias gradient: (DENSE-1) (BER-2) (BER-3) (ELBO-3)
    (DENSE-3). One pass over the (B, D) logits (``bernoulli_rows``, one exp(-|a|) per pixel),
    then their column sums (``column_sum``).

    logits (B, D): in, h @ W; out, dL/da = (sigma(a) - x) / B with a = h @ W + b.
    x (B, D) targets in [0, 1]. inv_b: 1/B in the array's dtype. loss (B,): out, -log p(x|z)
    per example (nats). db (D,): out, bias gradient. tmp (D,): scratch for the row's terms.
    """
    bernoulli_rows(logits, b, x, inv_b, loss, tmp)
    column_sum(logits, db)  # (DENSE-3)


@njit(**JIT_FMA)
def bernoulli_rows(logits, b, x, inv_b, loss, tmp):
    """Loss and gradient of ``bernoulli_loss_grad``, each row on its own, so that rows can be
    split between threads (``pool``): (DENSE-1) (BER-2) (BER-3) (ELBO-3)."""
    one, zero = logits.dtype.type(1.0), logits.dtype.type(0.0)
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            a = logits[i, j] + b[j]  # (DENSE-1)
            e = vexp(-abs(a))
            xi = x[i, j]
            tmp[j] = (a if a > zero else zero) - xi * a + vlog1p(e)  # (BER-2)
            logits[i, j] = inv_b * ((one if a >= zero else e) / (one + e) - xi)  # (BER-3)
        loss[i] = _row_sum(tmp)


@njit(**JIT)
def column_sum(g, db):
    """db = g.sum(axis=0), row after row as NumPy and the fused kernels add: (DENSE-3)."""
    db[:] = 0
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            db[j] += g[i, j]


@njit(**JIT_FMA)
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


@njit(**JIT_FMA)
def gaussian_floor_loss_grad(mean, logvar, b_mean, b_logvar, x, inv_b, log_floor, loss,
                             db_mean, db_logvar, tmp):
    """``gaussian_loss_grad`` with the variance floored: the log-variance head's output a becomes
    s = c + softplus(a - c) (ops.logvar_floor_forward) before the loss, and its gradient goes
    back through ds/da = sigma(a - c) (ops.logvar_floor_backward): (DENSE-1) (GAU-4) (GAU-1)
    (GAU-2) (GAU-3) (GAU-5) (ELBO-3) (DENSE-3).

    As ``gaussian_loss_grad``, plus log_floor: c = log sigma^2_min in the array's dtype. For the
    shared log-variance (GAU-6) the caller passes logvar = 0, so a = b_logvar and db_logvar,
    the column sum, is its gradient.
    """
    one, half, zero = mean.dtype.type(1.0), mean.dtype.type(0.5), mean.dtype.type(0.0)
    log_2pi = mean.dtype.type(LOG_2PI)
    g_half = inv_b * half
    inv_floor = mean.dtype.type(np.exp(-np.float64(log_floor)))  # 1 / sigma^2_min
    db_mean[:] = 0
    db_logvar[:] = 0
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            m = mean[i, j] + b_mean[j]  # (DENSE-1)
            t = logvar[i, j] + b_logvar[j] - log_floor  # (DENSE-1), then a - c
            e = vexp(-abs(t))
            lv = log_floor + ((t if t > zero else zero) + vlog1p(e))  # (GAU-4)
            slope = (one if t >= zero else e) / (one + e)  # sigma(a - c)  (GAU-5)
            # exp(-lv) = exp(-c) exp(-softplus(t)) = exp(-c) (1 - sigma(t)): the same e, no
            # second exp
            inv_var = inv_floor * ((e if t > zero else one) / (one + e))
            diff = x[i, j] - m
            d2v = diff * diff * inv_var
            tmp[j] = half * (log_2pi + lv + d2v)  # (GAU-1)
            gm = inv_b * (-diff * inv_var)  # (GAU-2) (ELBO-3)
            glv = g_half * (one - d2v) * slope  # (GAU-3) (GAU-5) (ELBO-3)
            mean[i, j] = gm
            logvar[i, j] = glv
            db_mean[j] += gm  # (DENSE-3)
            db_logvar[j] += glv  # (DENSE-3)
        loss[i] = _row_sum(tmp)


# =========================================================================== latent layer
@njit(**JIT)
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


@njit(**JIT)
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


@njit(**JIT)
def mean64(x):
    """The mean of a 1-D array, accumulated in float64 (batch means reported as Python floats)."""
    s = 0.0
    for i in range(x.shape[0]):
        s += np.float64(x[i])
    return s / x.shape[0]


# =========================================================================== optimiser
@njit(**JIT)
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
