"""Dynamic binarisation of one batch in one pass: the gather, the grey-value lookup and the
Bernoulli comparison of ``batches.iterate_batches``, fused (bitwise the same batch)."""

from __future__ import annotations

from numba import njit

from ._jit import JIT


@njit(**JIT)
def gather_binarize(images, rows, table, u, out):
    """out[r, j] = 1 if table[images[rows[r], j]] > u[r, j] else 0.

    images (N, D) uint8 grey values; rows (b,) which images, in batch order; table (256,) the
    probability of a 1 for each grey value (x / 255); u (b, D) uniform draws in [0, 1);
    out (b, D) float: written. The same values as np.take, np.take(table) and np.greater.
    """
    one, zero = out.dtype.type(1.0), out.dtype.type(0.0)
    for r in range(out.shape[0]):
        image = images[rows[r]]
        for j in range(out.shape[1]):
            out[r, j] = one if table[image[j]] > u[r, j] else zero
