"""How good is the model? The ELBO and the importance-weighted bound on log p(x).

All results are in nats per example. The ELBO (k = 1) is a lower bound on log p(x); Burda et
al.'s bound with k samples is a tighter one that rises towards log p(x) as k grows, so the
gap between the two says how much the encoder's approximation costs.

Memory stays bounded for any k: examples and samples are processed in blocks of at most
``max_rows`` decoder rows, and the log-sum-exp over samples is accumulated as it goes.
"""

from __future__ import annotations

import math

import numpy as np

from . import ops
from .ops import LOG_2PI

LOG_256 = math.log(256.0)  # the log-volume of one grey level is log(1/256) per pixel


def discrete_nats(continuous_nats, n_pixels: int):
    """An upper bound on -log P(pixels) of 8-bit images, in nats, from -E_u log p(x) of their
    dequantisation x = (pixel + u) / 256: add D log 256, the Jacobian of the /256 (GAU-7)."""
    return continuous_nats + n_pixels * LOG_256  # (GAU-7)


def bits_per_dim(nats, n_pixels: int):
    """Nats per image as bits per pixel: nats / (D ln 2)  (GAU-8)."""
    return nats / (n_pixels * math.log(2.0))  # (GAU-8)


def discrete_report(neg_elbo: float, n_pixels: int, neg_iw: float | None = None,
                    prefix: str = "") -> dict[str, float]:
    """The discrete -log P bounds of a dequantised run: -ELBO and -L_k in nats and bits/dim."""
    out = {}
    for name, value in (("neg_elbo", neg_elbo), ("neg_log_likelihood_iw", neg_iw)):
        if value is not None:
            nats = discrete_nats(value, n_pixels)
            out[f"{prefix}discrete_{name}"] = nats
            out[f"{prefix}discrete_{name}_bits_per_dim"] = bits_per_dim(nats, n_pixels)
    return out


def log_mean_exp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """log( mean(exp(a)) ) along ``axis`` without overflow or underflow."""
    return ops.log_mean_exp_forward(np.moveaxis(np.asarray(a), axis, 0))[0]  # (IWAE-2)


def log_normal_diag(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """log N(z; mu, diag exp(logvar)), summed over the last axis."""
    return -0.5 * np.sum(LOG_2PI + logvar + (z - mu) ** 2 * np.exp(-logvar), axis=-1)  # (IWAE-3)


def _log_weights(vae, x: np.ndarray, mu, logvar, eps: np.ndarray) -> np.ndarray:
    """log p(x, z_i) - log q(z_i | x) for eps (s, r, J) -> (s, r), float64."""
    s, r, J = eps.shape
    z = ops.reparameterize_forward(mu[None], logvar[None], eps)[0]  # (REP-1)
    xs = np.broadcast_to(x[None], (s, r, x.shape[1])).reshape(s * r, -1)
    nll = vae.engine.decoder_nll(xs, z.reshape(s * r, J))  # the decoder alone
    log_px_z = -nll.reshape(s, r)
    # log p(z) - log q(z|x) in float64, with (z - mu)^2 / sigma^2 = eps^2 (IWAE-3): no
    # cancellation in z - mu
    ratio, _ = ops.log_prior_ratio_forward(z.astype(np.float64), eps.astype(np.float64),
                                           logvar.astype(np.float64))  # (IWAE-4)
    return log_px_z + ratio  # (IWAE-1): log of the importance weight


def importance_weighted_bound(
    vae, X: np.ndarray, k: int, rng: np.random.Generator, *, max_rows: int = 8192,
    progress: bool = False,
) -> np.ndarray:
    """Burda et al.'s L_k for each row of X: log (1/k) sum_i p(x, z_i) / q(z_i|x), (N,) nats.

    k = 1 is a single-sample ELBO. Memory is O(max_rows * D) whatever k and N are.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    X = vae.check_input(X)
    N = len(X)
    rows = max(1, min(N, max_rows // min(k, max_rows)))  # examples per block
    samples = max(1, min(k, max_rows // rows))  # samples per block
    out = np.empty(N)
    bar = _progress(total=N * k, enabled=progress, desc=f"IWAE k={k}")
    for start in range(0, N, rows):
        x = X[start : start + rows]
        mu, logvar = vae.encode(x)
        m = np.full(len(x), -np.inf)  # running max of log w
        acc = np.zeros(len(x))  # running sum of exp(log w - m)
        for done in range(0, k, samples):
            s = min(samples, k - done)
            eps = rng.standard_normal((s, len(x), vae.n_latent), dtype=vae.dtype)
            lw = _log_weights(vae, x, mu, logvar, eps)
            new_m = np.maximum(m, lw.max(axis=0))
            acc = acc * np.exp(m - new_m) + np.exp(lw - new_m).sum(axis=0)  # (IWAE-2)
            m = new_m
            bar.update(s * len(x))
        out[start : start + len(x)] = m + np.log(acc) - math.log(k)  # (IWAE-2)
    bar.close()
    return out


def active_units(vae, X, threshold: float = 0.01, batch_size: int = 1000) -> int:
    """Burda et al.'s count of active latent units: those whose encoder mean varies over the
    images, Cov_x(E_q[z_j | x]) > ``threshold`` (they use 0.01). X: an array (N, D), or an
    iterable of such blocks (e.g. converted from uint8 a block at a time)."""
    blocks = ([X[i : i + batch_size] for i in range(0, len(X), batch_size)]
              if isinstance(X, np.ndarray) else X)
    mu = np.concatenate([vae.transform(x) for x in blocks]).astype(np.float64)
    return int(np.sum(mu.var(axis=0) > threshold))


def evaluate(
    vae, X: np.ndarray, *, k: int = 0, n_samples: int = 1, rng: np.random.Generator,
    progress: bool = False, dequantized: bool = False,
) -> dict[str, float]:
    """Mean -ELBO, its reconstruction and KL parts, and (k > 0) -L_k, in nats per example.

    ``dequantized``: X is (pixel + u) / 256 of 8-bit images; the result then also holds the
    bounds on the discrete -log P(pixels), in nats and bits per dimension (``discrete_*``)."""
    recon, kl = vae.elbo_terms(X, n_samples=n_samples, rng=rng)
    result = {"neg_elbo": float(np.mean(recon + kl)), "recon": float(np.mean(recon)),
              "kl": float(np.mean(kl)), "n_samples": n_samples, "n_examples": len(X)}
    if k > 0:
        lk = importance_weighted_bound(vae, X, k, rng, progress=progress)
        result.update({"k": k, "neg_log_likelihood_iw": float(-np.mean(lk))})
    if dequantized:
        result.update(discrete_report(result["neg_elbo"], X.shape[1],
                                      result.get("neg_log_likelihood_iw")))
    return result


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="sample", unit_scale=True)
