"""The numerics behind the latent-space figures, testable without matplotlib.

PCA of the encoder means (the plane a J > 2 scatter and manifold are drawn in), the standard
normal quantile Φ⁻¹ (the paper's manifold grid), and interpolation between two codes.
This module imports only NumPy.
"""

from __future__ import annotations

import math

import numpy as np


def pca2(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project onto the first two principal components (SVD of centred data).

    Returns (projection (n, 2), fraction of variance of each component (2,), the two unit
    directions (2, J)). Signs are fixed so each component's largest loading is positive, making
    the picture reproducible.
    """
    centred = mu - mu.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])[:, None]
    return centred @ vt.T, (s[:2] ** 2) / max(float(np.sum(s**2)), 1e-300), vt


_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758276161838e00,
      -2.549671010229297e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_erfc = np.vectorize(math.erfc, otypes=[float])


def norm_cdf(x: float | np.ndarray) -> float | np.ndarray:
    """Φ(x) = erfc(-x/√2)/2, the standard normal distribution function; vectorised."""
    return 0.5 * _erfc(-np.asarray(x, dtype=float) / math.sqrt(2.0))


def norm_ppf(p: float | np.ndarray) -> float | np.ndarray:
    """Φ⁻¹(p), the standard normal quantile, for p in (0, 1); vectorised, no SciPy.

    Acklam's approximation on the lower half q = min(p, 1 - p) (1 - p is exact for p >= 0.5),
    one Halley step on Φ(x) - q with Φ(x) = erfc(-x/√2)/2, then the sign from symmetry.
    """
    p_arr = np.asarray(p, dtype=float)
    bad = p_arr[~((p_arr > 0) & (p_arr < 1))]  # also catches NaN
    if bad.size:
        raise ValueError(f"norm_ppf needs probabilities strictly inside (0, 1), got {bad[:3]} "
                         f"({bad.size} bad in all); Φ⁻¹(0) and Φ⁻¹(1) are ∓inf, so clip p first")
    q = np.minimum(p_arr, 1.0 - p_arr)  # lower half, q in (0, 0.5]
    t = np.sqrt(-2.0 * np.log(q))  # tail region, q < 0.02425
    tail = (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]) / \
        ((((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0)
    r = q - 0.5
    s = r * r  # central region
    central = (((((_A[0] * s + _A[1]) * s + _A[2]) * s + _A[3]) * s + _A[4]) * s + _A[5]) * r / \
        (((((_B[0] * s + _B[1]) * s + _B[2]) * s + _B[3]) * s + _B[4]) * s + 1.0)
    x = np.where(q < 0.02425, tail, central)
    # Halley: e = Φ(x) - q, u = e / φ(x); x <- x - u / (1 + x u / 2)
    e = 0.5 * _erfc(-x / math.sqrt(2.0)) - q
    u = e * math.sqrt(2.0 * math.pi) * np.exp(0.5 * x * x)
    x = x - u / (1.0 + 0.5 * x * u)
    x = np.where(p_arr > 0.5, -x, x)
    return float(x) if x.ndim == 0 else x


def interpolate_latents(z0: np.ndarray, z1: np.ndarray, steps: int,
                        method: str = "linear") -> np.ndarray:
    """Points from z0 to z1 inclusive, shape (steps, J).

    "linear": (1 - t) z0 + t z1. "slerp": along the great circle, sin((1-t)Ω)/sin Ω z0 +
    sin(tΩ)/sin Ω z1 with cos Ω the cosine between them; for equal norms every point keeps
    that norm, whereas the linear midpoint shrinks towards the origin, where a J-D standard
    normal prior has little mass (its samples concentrate near radius √J).
    """
    z0, z1 = np.asarray(z0, dtype=float), np.asarray(z1, dtype=float)
    if z0.ndim != 1 or z0.shape != z1.shape or steps < 2:
        raise ValueError(f"need two 1-D latents of equal length and steps >= 2, got shapes "
                         f"{z0.shape}, {z1.shape} and steps={steps}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "linear":
        out = (1.0 - t) * z0 + t * z1
    elif method == "slerp":
        norms = np.linalg.norm(z0) * np.linalg.norm(z1)
        omega = math.acos(np.clip(z0 @ z1 / norms, -1.0, 1.0)) if norms > 0 else 0.0
        if math.sin(omega) < 1e-8:  # (anti)parallel: the great circle is undefined
            out = (1.0 - t) * z0 + t * z1
        else:
            out = (np.sin((1.0 - t) * omega) * z0 + np.sin(t * omega) * z1) / math.sin(omega)
    else:
        raise ValueError(f"method={method!r}; expected 'linear' or 'slerp'")
    out[0], out[-1] = z0, z1
    return out
