"""Fused kernels of the k-sample objectives: the k-sample ELBO (ELBO-4) and the IWAE (IWAE-1).

Read next to ``network.forward_k``/``backward_k`` and ``derivations/iwae_training.md``. The
decoder runs on k * B rows, sample-major: row r = i * B + b is sample i of example b, so the
(k, B, J) noise is a (k * B, J) matrix with no copy. The encoder, mu, logvar, std and the KL
stay (B, J): the k samples of an example share them, and their gradients sum over i.

The IWAE weights w~ (a softmax over each example's k log-weights) are known only after every
sample's -log p(x|z_i) is, so the loss kernel runs with weight 1 and ``scale_rows`` applies
w~_i / B to each row afterwards, adding the bias gradient in the same pass. Float64 arrays get
float64 everywhere; float32 arrays accumulate the log-sum-exp in float64 (k values per example).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._jit import JIT


@njit(**JIT)
def latent_forward_k(mu, logvar, b_mu, b_logvar, eps, z, std, kl, ratio):
    """Fuses the heads' bias adds, ops.reparameterize_forward for k samples,
    ops.kl_standard_normal_forward and ops.log_prior_ratio_forward: (DENSE-1) (REP-1) (KL-1)
    (IWAE-4).

    mu, logvar (B, J): in, h @ W; out, with the biases added. eps (k, B, J). z (k * B, J): out,
    row i * B + b = mu_b + std_b * eps_ib. std (B, J), kl (B,): out. ratio (k * B,): out,
    log p(z) - log q(z|x) of each sample.
    """
    half = mu.dtype.type(0.5)
    k, B, J = eps.shape
    for b in range(B):
        s = mu.dtype.type(0.0)
        slv = mu.dtype.type(0.0)
        for j in range(J):
            m = mu[b, j] + b_mu[j]  # (DENSE-1)
            lv = logvar[b, j] + b_logvar[j]  # (DENSE-1)
            mu[b, j] = m
            logvar[b, j] = lv
            std[b, j] = np.exp(half * lv)
            s += half * (m * m + np.expm1(lv) - lv)  # (KL-1)
            slv += lv
        kl[b] = s
        for i in range(k):
            r = i * B + b
            se = mu.dtype.type(0.0)
            for j in range(J):
                e = eps[i, b, j]
                zj = mu[b, j] + std[b, j] * e  # (REP-1)
                z[r, j] = zj
                se += e * e - zj * zj
            ratio[r] = half * (slv + se)  # (IWAE-4)


@njit(**JIT)
def iwae_weights(nll, ratio, k, inv_b, w, neg_L):
    """Fuses ops.log_mean_exp_forward and its backward seed for the batch mean of -L_k:
    (IWAE-1) (IWAE-2) (IWAE-5) (IWAE-6).

    nll, ratio (k * B,): -log p(x|z_i) and log p(z_i) - log q(z_i|x). w (k * B,): out, w~_i / B,
    each sample's weight in dL/dnll (the softmax of log w_i = -nll_i + ratio_i over i).
    neg_L (B,): out, -L_k per example (nats).
    """
    B = neg_L.shape[0]
    log_k = math.log(k)
    for b in range(B):
        m = -np.inf
        for i in range(k):
            lw = -np.float64(nll[i * B + b]) + np.float64(ratio[i * B + b])  # (IWAE-1)
            if lw > m:
                m = lw
        s = 0.0
        for i in range(k):
            s += math.exp(-np.float64(nll[i * B + b]) + np.float64(ratio[i * B + b]) - m)
        neg_L[b] = -(m + math.log(s) - log_k)  # (IWAE-2)
        for i in range(k):
            e = math.exp(-np.float64(nll[i * B + b]) + np.float64(ratio[i * B + b]) - m)
            w[i * B + b] = (e / s) * inv_b  # (IWAE-5) (IWAE-6): w~_i / B


@njit(**JIT)
def scale_rows(g, w, db):
    """g (R, D): in, dL/d(head) with weight 1; out, each row times w[r]. db (D,): out, the column
    sums of the result, the head's bias gradient: (IWAE-6) (DENSE-3)."""
    db[:] = 0
    for r in range(g.shape[0]):
        wr = w[r]
        for j in range(g.shape[1]):
            v = g[r, j] * wr
            g[r, j] = v
            db[j] += v  # (DENSE-3)


@njit(**JIT)
def latent_backward_k(dz, z, mu, logvar, std, eps, w, g_kl, iwae, dmu, dlogvar, db_mu,
                      db_logvar):
    """Fuses ops.reparameterize_backward summed over the k samples with, for the IWAE,
    ops.log_prior_ratio_backward seeded with -w~_i / B, or, for the k-sample ELBO,
    ops.kl_standard_normal_backward with dkl = beta / B; and both heads' bias gradients:
    (REP-2) (REP-3) (IWAE-6) (KL-2) (KL-3) (DENSE-3).

    dz (k * B, J): dL/dz from the decoder. z (k * B, J), mu, logvar, std (B, J), eps (k, B, J).
    w (k * B,): w~_i / B from ``iwae_weights`` (read only if ``iwae``). g_kl: beta / B (read
    only if not ``iwae``). dmu, dlogvar (B, J), db_mu, db_logvar (J,): out.
    """
    half = mu.dtype.type(0.5)
    zero = mu.dtype.type(0.0)
    k, B, J = eps.shape
    db_mu[:] = 0
    db_logvar[:] = 0
    for b in range(B):
        sw = _sum_w(w, b, B, k) if iwae else zero  # sum_i w~_i / B: 1/B up to rounding
        for j in range(J):
            gm = zero
            glv = zero
            for i in range(k):
                r = i * B + b
                d = dz[r, j]
                if iwae:
                    d += w[r] * z[r, j]  # (IWAE-6): the -z^2/2 of log p(z_i)
                gm += d  # (REP-2), summed over the samples
                glv += d * half * std[b, j] * eps[i, b, j]  # (REP-3)
            if iwae:
                glv -= half * sw  # (IWAE-6): the logvar/2 of -log q(z_i|x)
            else:
                gm += g_kl * mu[b, j]  # (KL-2)
                glv += g_kl * half * np.expm1(logvar[b, j])  # (KL-3)
            dmu[b, j] = gm
            dlogvar[b, j] = glv
            db_mu[j] += gm  # (DENSE-3)
            db_logvar[j] += glv  # (DENSE-3)


@njit(**JIT)
def _sum_w(w, b, B, k):
    s = w.dtype.type(0.0)
    for i in range(k):
        s += w[i * B + b]
    return s
