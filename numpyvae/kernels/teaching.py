"""A matrix product written by hand, for teaching and the benchmark table only.

The training step never calls it: ``numpyvae.fast`` hands every product to BLAS. It is kept
apart from the fused kernels because it is the one kernel that allows ``reassoc`` (sums in
another order than the reference's), which the fused kernels' header rules out.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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
