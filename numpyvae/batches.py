"""Binarisation and mini-batches: uint8 images become float batches one at a time.

Images stay uint8 (N, D) in memory; ``iterate_batches`` converts one batch at a time into a
reused buffer. All randomness (the epoch's permutation, the dynamic Bernoulli draws) comes from
the ``numpy.random.Generator`` passed in, so the same generator state reproduces an epoch bit
for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import DTypeLike

from .config import BINARIZATIONS
from .kernels import gather_binarize

NONE_BINARIZATION_WARNING = (
    "binarize='none' uses grey values x/255 as targets of a Bernoulli decoder. That is not a "
    "proper likelihood (x is not 0 or 1), so the ELBO is not a bound on log p(x) and cannot be "
    "compared with published binarised-MNIST numbers. Use 'dynamic' (the standard benchmark "
    "setting) or 'static' for reported results."
)


def _lookup_table(binarize: str, dtype: np.dtype, dequantize: bool = False) -> np.ndarray:
    """float (256,): the value of each byte; x/255 for grey values, x itself for 0/1 images,
    x/256 for the lower edge of its grey level (dequantisation adds u/256 to it)."""
    values = np.arange(256, dtype=np.float64)
    if dequantize:
        return (values / 256).astype(dtype)
    return (values if binarize == "static" else values / 255).astype(dtype)


def _check_dequantize(images: np.ndarray, binarize: str) -> None:
    if binarize != "none":
        raise ValueError(f"dequantize with binarize={binarize!r}: dequantisation turns 8-bit "
                         "grey values into real values (for a Gaussian decoder); it needs "
                         "binarize='none'")


def dequantize_static(images: np.ndarray, seed: int, dtype: DTypeLike = np.float32
                      ) -> np.ndarray:
    """One fixed dequantisation x = (pixel + u) / 256, u ~ U(0, 1) from ``default_rng(seed)``
    (GAU-7): floats in [0, 1), same shape as the uint8 ``images``. Same seed, same result."""
    if np.asarray(images).dtype != np.uint8:
        raise ValueError(f"images must be uint8 grey values 0..255, got {np.asarray(images).dtype}")
    x = np.take(_lookup_table("none", np.dtype(dtype), dequantize=True), images)
    u = np.random.default_rng(seed).random(x.shape, dtype=np.dtype(dtype))
    x += u * np.dtype(dtype).type(1 / 256)  # (GAU-7): exact in binary, one rounding in the sum
    return x


def to_float(images: np.ndarray, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Grey values as floats in [0, 1]: x/255, same shape as the uint8 ``images``."""
    return np.take(_lookup_table("none", np.dtype(dtype)), images)


def binarize_static(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed Bernoulli(x/255) draw per pixel: uint8 0/1, same shape as ``images``.

    Same seed, same result. Draws in chunks so memory stays small for all of MNIST.
    """
    if np.asarray(images).dtype != np.uint8:
        raise ValueError(f"images must be uint8 grey values 0..255, got {np.asarray(images).dtype}")
    p = _lookup_table("none", np.dtype(np.float32))
    rng = np.random.default_rng(seed)
    flat = np.ascontiguousarray(images).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    step = 1 << 20
    for start in range(0, flat.size, step):
        chunk = flat[start : start + step]
        u = rng.random(chunk.size, dtype=np.float32)
        np.greater(p[chunk], u, out=out[start : start + step])  # 1 with probability x/255
    return out.reshape(np.shape(images))


def iterate_batches(images: np.ndarray, batch_size: int, *, rng: np.random.Generator,
                    binarize: str, dtype: DTypeLike = np.float32, shuffle: bool = True,
                    out: np.ndarray | None = None, dequantize: bool = False
                    ) -> Iterator[np.ndarray]:
    """One epoch of float mini-batches x, shape (b, D), b = batch_size except maybe the last.

    Args:
        images: uint8 (N, D); for ``binarize="static"`` already 0/1 (see ``binarize_static``).
        batch_size: rows per batch; every row appears exactly once per epoch, none is dropped.
        rng: the only source of randomness (the permutation, then the dynamic draws in batch
            order), so the same generator state reproduces the epoch bit for bit.
        binarize: "dynamic" (fresh Bernoulli(x/255) draws for every batch), "static" (images are
            already 0/1) or "none" (x/255; see NONE_BINARIZATION_WARNING).
        dtype: float32 or float64.
        shuffle: visit rows in the order of ``rng.permutation(N)``, else in order.
        out: optional buffer (>= min(batch_size, N), D) of ``dtype`` to reuse across epochs.
        dequantize: with ``binarize="none"``, x = (pixel + u) / 256 with u ~ U(0, 1) drawn
            fresh for every batch from ``rng`` (after the permutation, in batch order), so a
            continuous density of x bounds the discrete likelihood of the pixels (GAU-7).

    Every batch is a view into one buffer that the next batch overwrites: use a batch before
    asking for the next, and copy it if you need to keep it. Buffers are allocated once per
    call (epoch), nothing per batch; arguments are checked at the call, not at the first batch.
    """
    n, d = _check_batch_args(images, batch_size, rng, binarize, dtype)
    if dequantize:
        _check_dequantize(images, binarize)
    rows = min(batch_size, n)
    if out is None:
        out = np.empty((rows, d), dtype=dtype)
    elif (out.dtype != np.dtype(dtype) or out.ndim != 2 or out.shape[0] < rows
          or out.shape[1] != d or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape "
                         f"(>= {rows}, {d}); got {out.dtype} {out.shape}")
    return _batches(images, batch_size, rng, binarize, shuffle, out, dequantize)


def _batches(images: np.ndarray, batch_size: int, rng: np.random.Generator, binarize: str,
             shuffle: bool, out: np.ndarray, dequantize: bool) -> Iterator[np.ndarray]:
    n = len(images)
    table = _lookup_table(binarize, out.dtype, dequantize)
    order = rng.permutation(n) if shuffle else None
    uniforms = np.empty_like(out) if binarize == "dynamic" or dequantize else None
    if binarize == "dynamic" and not dequantize:  # gather, lookup and draw in one kernel
        rows = order if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x, u = out[: stop - start], uniforms[: stop - start]
            rng.random(dtype=out.dtype, out=u)  # Bernoulli(p) draw: 1 where p > u, u ~ U[0, 1)
            gather_binarize(images, rows[start:stop], table, u, x)
            yield x
        return
    gathered = np.empty((len(out), images.shape[1]), dtype=np.uint8) if shuffle else None
    step = out.dtype.type(1 / 256)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x8 = images[start:stop]
        if order is not None:  # gather the shuffled rows into a reused buffer, not a new array
            x8 = np.take(images, order[start:stop], axis=0, out=gathered[: stop - start],
                         mode="clip")
        x = out[: stop - start]
        np.take(table, x8, out=x, mode="clip")  # uint8 -> float through a 256-entry table
        if dequantize:  # x = pixel/256 + u/256, u ~ Uniform[0, 1)  (GAU-7)
            u = uniforms[: stop - start]
            rng.random(dtype=out.dtype, out=u)
            np.multiply(u, step, out=u)
            np.add(x, u, out=x)
        yield x


def _check_batch_args(images: np.ndarray, batch_size: int, rng: np.random.Generator,
                      binarize: str, dtype: DTypeLike) -> tuple[int, int]:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise ValueError(f"images must be a uint8 array of shape (N, D); got "
                         f"{getattr(images, 'dtype', type(images))} {np.shape(images)}")
    if len(images) == 0:
        raise ValueError("images is empty (N = 0); expected at least one row")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if binarize not in BINARIZATIONS:
        raise ValueError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if binarize == "static" and images.max() > 1:
        raise ValueError("binarize='static' expects 0/1 images; got grey values up to "
                         f"{images.max()}. Fix: pass binarize_static(images, seed).")
    return images.shape
