"""Reference operations: forward/backward pairs in plain NumPy.

Each operation is a pair in the style of CS231n's ``layers.py``::

    out, cache = op_forward(inputs...)
    grads = op_backward(dout, cache)

Shapes use B for the batch (rows are examples), D for pixels, H for hidden units and J for
latent units. Every line that implements an equation cites its label in ``derivations/``.
These functions are the readable twin of ``numpyvae.kernels``: tests prove the two agree.
This module imports only NumPy.
"""

from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- dense (affine)
def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray):
    """y = x W + b.  x (B, n_in), W (n_in, n_out), b (n_out,) -> y (B, n_out)."""
    ### BEGIN SOLUTION
    ### HINT: one matrix product, and the bias broadcast over the rows; y is (B, n_out)
    y = x @ W + b  # (DENSE-1)
    ### END SOLUTION
    return y, (x, W)


def dense_backward(dy: np.ndarray, cache, need_dx: bool = True):
    """dy (B, n_out) -> (dx (B, n_in) or None, dW (n_in, n_out), db (n_out,)).

    The first layer of the encoder passes ``need_dx=False``: nobody needs dL/dx of the data.
    """
    x, W = cache
    ### BEGIN SOLUTION
    ### HINT: dW has W's shape, db b's, dx x's (None unless need_dx); the batch sum is in a product
    dW = x.T @ dy  # (DENSE-2)
    db = dy.sum(axis=0)  # (DENSE-3)
    dx = dy @ W.T if need_dx else None  # (DENSE-4)
    ### END SOLUTION
    return dx, dW, db


# --------------------------------------------------------------------------- activations
def sigmoid(a: np.ndarray) -> np.ndarray:
    """sigma(a) without overflow: exp is only ever taken of -|a| <= 0."""
    ### BEGIN SOLUTION
    ### HINT: with e = exp(-|a|) <= 1: 1 / (1 + e) where a >= 0, e / (1 + e) where a < 0
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # (ACT-3)
    ### END SOLUTION


def softplus(a: np.ndarray) -> np.ndarray:
    """log(1 + e^a), written so that no exp overflows and no precision is lost for a << 0."""
    ### BEGIN SOLUTION
    ### HINT: max(a, 0) + log1p(exp(-|a|)): no exp of a positive number, no 1 + tiny rounded to 1
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))  # (ACT-1)
    ### END SOLUTION


def softplus_forward(a: np.ndarray):
    """h = softplus(a), any shape."""
    return softplus(a), a


def softplus_backward(dh: np.ndarray, cache) -> np.ndarray:
    a = cache
    ### BEGIN SOLUTION
    ### HINT: dh times the slope of softplus at a
    return dh * sigmoid(a)  # (ACT-2): softplus'(a) = sigma(a)
    ### END SOLUTION


def sigmoid_forward(a: np.ndarray):
    """p = sigma(a), any shape."""
    p = sigmoid(a)
    return p, p


def sigmoid_backward(dp: np.ndarray, cache) -> np.ndarray:
    p = cache
    ### BEGIN SOLUTION
    ### HINT: dp times the slope of the sigmoid, written with the cached p = sigma(a)
    return dp * p * (1.0 - p)  # (ACT-4)
    ### END SOLUTION


def tanh_forward(a: np.ndarray):
    """h = tanh(a), any shape."""
    h = np.tanh(a)
    return h, h


def tanh_backward(dh: np.ndarray, cache) -> np.ndarray:
    h = cache
    ### BEGIN SOLUTION
    ### HINT: dh times the slope of tanh, written with the cached h = tanh(a)
    return dh * (1.0 - h * h)  # (ACT-5)
    ### END SOLUTION


def relu_forward(a: np.ndarray):
    """h = max(a, 0), any shape."""
    ### BEGIN SOLUTION
    ### HINT: return (h, cache); relu_backward reads the cache as a, the pre-activation
    return np.maximum(a, 0), a  # (ACT-6)
    ### END SOLUTION


def relu_backward(dh: np.ndarray, cache) -> np.ndarray:
    a = cache
    ### BEGIN SOLUTION
    ### HINT: dh where a > 0, 0 elsewhere
    return dh * (a > 0)  # (ACT-6): relu'(a) = 1[a > 0]
    ### END SOLUTION


# --------------------------------------------------------------------------- Bernoulli NLL
def bce_with_logits_forward(logits: np.ndarray, x: np.ndarray):
    """Bernoulli negative log-likelihood from logits, summed over pixels.

    logits a (B, D), targets x (B, D) in [0, 1] -> loss (B,) in nats.
    Stable for |a| up to the dtype's range: no exp of a positive number, no log of 0.
    """
    ### BEGIN SOLUTION
    ### HINT: loss (B, D), one term per pixel, stably from the logits; the return line sums them
    # (BER-1) -sum[x log sigma(a) + (1-x) log(1-sigma(a))] rewritten without sigma:
    loss = np.maximum(logits, 0) - x * logits + np.log1p(np.exp(-np.abs(logits)))  # (BER-2)
    ### END SOLUTION
    return loss.sum(axis=1), (logits, x)


def bce_with_logits_backward(dloss: np.ndarray, cache) -> np.ndarray:
    """dloss (B,) -> dlogits (B, D)."""
    logits, x = cache
    ### BEGIN SOLUTION
    ### HINT: dlogits (B, D): each row is that example's dloss times dNLL/dlogits
    return dloss[:, None] * (sigmoid(logits) - x)  # (BER-3)
    ### END SOLUTION


# --------------------------------------------------------------------------- Gaussian NLL
def gaussian_nll_forward(x: np.ndarray, mean: np.ndarray, logvar: np.ndarray):
    """-log N(x; mean, diag exp(logvar)), summed over pixels.

    x, mean, logvar (B, D) -> loss (B,) in nats.
    """
    ### BEGIN SOLUTION
    ### HINT: inv_var = 1 / variance and diff = x - mean (the cache), then loss (B, D) per pixel
    inv_var = np.exp(-logvar)
    diff = x - mean
    loss = 0.5 * (LOG_2PI + logvar + diff * diff * inv_var)  # (GAU-1)
    ### END SOLUTION
    return loss.sum(axis=1), (diff, inv_var)


def gaussian_nll_backward(dloss: np.ndarray, cache):
    """dloss (B,) -> (dmean (B, D), dlogvar (B, D))."""
    diff, inv_var = cache
    ### BEGIN SOLUTION
    ### HINT: each row is scaled by its example's dloss; dmean and dlogvar are (B, D)
    g = dloss[:, None]
    dmean = g * (-diff * inv_var)  # (GAU-2): (mean - x) / var
    dlogvar = g * 0.5 * (1.0 - diff * diff * inv_var)  # (GAU-3)
    ### END SOLUTION
    return dmean, dlogvar


def logvar_floor_forward(a: np.ndarray, log_floor: float):
    """A log-variance that never falls below c = log sigma^2_min: sigma^2 = sigma^2_min + e^a.

    a (B, D), the head's output -> s (B, D) = log(sigma^2_min + e^a) = c + softplus(a - c),
    computed without exp(a) (no overflow) and without log(sigma^2_min + e^a) rounding to c.
    """
    ### BEGIN SOLUTION
    ### HINT: t = a - c (the cache: the backward needs it), then s from the module's stable softplus
    t = a - log_floor
    s = log_floor + softplus(t)  # (GAU-4)
    ### END SOLUTION
    return s, t


def logvar_floor_backward(ds: np.ndarray, cache) -> np.ndarray:
    """ds (B, D) -> da (B, D); the cache is t = a - c from logvar_floor_forward."""
    t = cache
    ### BEGIN SOLUTION
    ### HINT: ds times the slope of s = c + softplus(t), with the cached t = a - c
    return ds * sigmoid(t)  # (GAU-5): ds/da = sigma(a - c), in (0, 1)
    ### END SOLUTION


def shared_forward(b: np.ndarray, n: int):
    """One value per pixel, shared by all n rows: b (D,) -> s (n, D), s[i] = b (GAU-6)."""
    ### BEGIN SOLUTION
    ### HINT: return (s, None): n copies of b, one per row, s of shape (n, D)
    return np.broadcast_to(b, (n, b.shape[0])).copy(), None  # (GAU-6)
    ### END SOLUTION


def shared_backward(ds: np.ndarray) -> np.ndarray:
    """ds (n, D) -> db (D,): the gradient of the b of shared_forward (GAU-6)."""
    ### BEGIN SOLUTION
    ### HINT: each row of ds is the gradient of one use of b; db has b's shape (D,)
    return ds.sum(axis=0)  # (GAU-6): every row used b, so db is the column sum
    ### END SOLUTION


# --------------------------------------------------------------------------- reparameterisation
def reparameterize_forward(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray):
    """z = mu + sigma * eps with sigma = exp(logvar / 2) the standard deviation.

    mu, logvar, eps (B, J) -> z (B, J). The noise eps ~ N(0, I) is an input, so z is a
    deterministic, differentiable function of mu and logvar.
    """
    ### BEGIN SOLUTION
    ### HINT: std is the standard deviation (the return line caches it), then z
    std = np.exp(0.5 * logvar)
    z = mu + std * eps  # (REP-1)
    ### END SOLUTION
    return z, (std, eps)


def reparameterize_backward(dz: np.ndarray, cache):
    """dz (B, J) -> (dmu (B, J), dlogvar (B, J))."""
    std, eps = cache
    ### BEGIN SOLUTION
    ### HINT: the chain rule through z = mu + std * eps, with std = exp(logvar / 2)
    dmu = dz  # (REP-2)
    dlogvar = dz * 0.5 * std * eps  # (REP-3)
    ### END SOLUTION
    return dmu, dlogvar


# --------------------------------------------------------------------------- KL to N(0, I)
def kl_standard_normal_forward(mu: np.ndarray, logvar: np.ndarray):
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over latent units.

    mu, logvar (B, J) -> kl (B,) in nats. ``expm1(s) - s`` is the accurate form of
    ``exp(s) - s - 1`` near s = 0, where the KL is smallest.
    """
    ### BEGIN SOLUTION
    ### HINT: kl (B, J), one term per latent unit; np.expm1(s) is exp(s) - 1 without rounding near 0
    kl = 0.5 * (mu * mu + np.expm1(logvar) - logvar)  # (KL-1)
    ### END SOLUTION
    return kl.sum(axis=1), (mu, logvar)


def kl_standard_normal_backward(dkl: np.ndarray, cache):
    """dkl (B,) -> (dmu (B, J), dlogvar (B, J))."""
    mu, logvar = cache
    ### BEGIN SOLUTION
    ### HINT: each row is scaled by its example's dkl; differentiate the KL term in mu and in logvar
    g = dkl[:, None]
    dmu = g * mu  # (KL-2)
    dlogvar = g * 0.5 * np.expm1(logvar)  # (KL-3)
    ### END SOLUTION
    return dmu, dlogvar


# --------------------------------------------------------------------------- k-sample objectives
def log_prior_ratio_forward(z: np.ndarray, eps: np.ndarray, logvar: np.ndarray):
    """log p(z_i) - log q(z_i|x) for reparameterised samples z_i = mu + sigma * eps_i.

    z, eps (k, B, J); logvar (B, J), shared by the k samples of an example -> (k, B) in nats.
    With (z - mu)^2 / sigma^2 = eps^2 the log 2 pi terms of the two densities cancel.
    """
    ### BEGIN SOLUTION
    ### HINT: r (k, B): sum each term over the J latent units; logvar (B, J) is shared by the
    ### HINT: k samples
    r = 0.5 * (np.sum(logvar, axis=-1) + np.sum(eps * eps - z * z, axis=-1))  # (IWAE-4)
    ### END SOLUTION
    return r, z


def log_prior_ratio_backward(dr: np.ndarray, cache):
    """dr (k, B) -> (dz (k, B, J), dlogvar (B, J)); eps is noise, held fixed: no gradient."""
    z = cache
    ### BEGIN SOLUTION
    ### HINT: differentiate r in z and in logvar; the k samples share one logvar (B, J) per example
    dz = -dr[..., None] * z  # (IWAE-6): d/dz of -z^2 / 2
    dlogvar = 0.5 * np.broadcast_to(dr.sum(axis=0)[:, None], z.shape[1:])  # (IWAE-6)
    ### END SOLUTION
    return dz, dlogvar


def log_mean_exp_forward(log_w: np.ndarray):
    """L = log (1/k) sum_i exp(log_w_i) over the first axis, computed stably.

    log_w (k, B) -> L (B,). The cache is the normalised weights w~ = softmax(log_w) (k, B).
    """
    ### BEGIN SOLUTION
    ### HINT: m = the max over the k samples, e = exp(log_w - m) (no exponent > 0), s = its
    ### HINT: sum over the samples (the return line caches e / s), then L: add m back, and the
    ### HINT: mean's 1/k
    m = log_w.max(axis=0)
    e = np.exp(log_w - m)  # every exponent <= 0: no overflow
    s = e.sum(axis=0)
    L = m + np.log(s) - math.log(log_w.shape[0])  # (IWAE-2)
    ### END SOLUTION
    return L, e / s


def log_mean_exp_backward(dL: np.ndarray, cache) -> np.ndarray:
    """dL (B,) -> dlog_w (k, B); the cache is what log_mean_exp_forward returned with L."""
    w_tilde = cache
    ### BEGIN SOLUTION
    ### HINT: each of the k samples gets its share of dL (B,): the slope of L in its
    ### HINT: log-weight, which the cache holds
    return dL * w_tilde  # (IWAE-5): each sample's share is its normalised weight
    ### END SOLUTION


# --------------------------------------------------------------------------- initialisation
def xavier_uniform(
    fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """Glorot/Xavier uniform weights of shape (fan_in, fan_out), as in the seed."""
    ### BEGIN SOLUTION
    ### HINT: U(-r, r) has variance r^2 / 3; Glorot wants 2 / (fan_in + fan_out)
    r = math.sqrt(6.0 / (fan_in + fan_out))  # (INIT-1)
    ### END SOLUTION
    return rng.uniform(-r, r, size=(fan_in, fan_out)).astype(dtype, copy=False)


def he_uniform(
    fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """He/Kaiming uniform weights of shape (fan_in, fan_out), for ReLU networks."""
    ### BEGIN SOLUTION
    ### HINT: U(-r, r) has variance r^2 / 3; He wants 2 / fan_in
    r = math.sqrt(6.0 / fan_in)  # (INIT-2)
    ### END SOLUTION
    return rng.uniform(-r, r, size=(fan_in, fan_out)).astype(dtype, copy=False)


INITS = {"xavier": xavier_uniform, "he": he_uniform}
