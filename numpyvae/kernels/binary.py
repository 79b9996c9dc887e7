"""The encoder's first layer on 0/1 data: its two products as sums of rows (DENSE-5).

Binarised MNIST is 0 or 1 in every pixel, and 0 in seven of eight. For such an x, the product
x W of (DENSE-1) is, for each example, the sum of the rows of W at that example's ones (about
100 of the 784), and the weight gradient x^T G of (DENSE-2) is, for each pixel, the sum of the
rows of G of the examples in which that pixel is 1: no multiplication and an eighth of the
additions. BLAS cannot know the zeros and does all 784. (The sums are bound by loading the rows,
one float per addition, where BLAS reuses every load many times: so the gain is about 2 to 4 times
per product, not 8; ``benchmarks/bench_parts.py`` measures it.)

* ``binary_rows`` checks that x is 0/1 and lists each row's ones (positions, ascending);
* ``binary_bias_act`` sums the rows of W for each example, then applies the same bias +
  activation kernel as after a BLAS product, row by row while the row is in cache;
* ``binary_weight_grad`` lists, for each pixel in [lo, hi), the examples in which it is 1 (a
  counting sort of the rows' lists) and sums their rows of G.

They win while the ones are few: at batch 100 three times faster than BLAS at MNIST's 13 %,
as fast at 35-40 % (``fast.MAX_ONES_FRACTION``, the engine's limit, is 25 %).

Sums take the rows four at a time, ((w0 + w1) + (w2 + w3)), in list order: the result differs
from BLAS's only by rounding (another order of the same additions, no products), and no output
element depends on how rows or pixels are split between threads (``pool``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._jit import JIT
from .fused import bias_act


@njit(**JIT)
def binary_rows(x, cols, counts, max_ones):
    """Each row's ones: cols[i, :counts[i]] are the j with x[i, j] = 1, ascending (DENSE-5).

    x (B, D) float. cols (B, D) int32, counts (B,) int64: out. Returns False at the first row
    holding a value other than 0 or 1 (NaN included), or once the rows so far hold more than
    ``max_ones`` ones (dense 0/1 data: BLAS is then as fast); cols and counts are then partly
    written.
    """
    B, D = x.shape
    zero, one = x.dtype.type(0.0), x.dtype.type(1.0)
    total = 0
    for i in range(B):
        bad = 0
        for j in range(D):  # vectorises: no early exit inside the row
            v = x[i, j]
            bad |= (v != zero) & (v != one)
        if bad:
            return False
        n = 0
        j = 0
        while j + 8 <= D:  # mostly zeros: skip eight at a time (0/1 values sum to 0 iff all 0)
            if (((x[i, j] + x[i, j + 1]) + (x[i, j + 2] + x[i, j + 3]))
                    + ((x[i, j + 4] + x[i, j + 5]) + (x[i, j + 6] + x[i, j + 7]))) != zero:
                for q in range(j, j + 8):
                    cols[i, n] = q  # written always, kept only where x is 1: no branch
                    n += x[i, q] != zero
            j += 8
        for q in range(j, D):
            cols[i, n] = q
            n += x[i, q] != zero
        counts[i] = n
        total += n
        if total > max_ones:
            return False
    return True


@njit(**JIT)
def sum_rows(src, idx, n, out):
    """out = src[idx[0]] + ... + src[idx[n - 1]] (zeros for n = 0), four rows at a time:
    (DENSE-5). src (R, H), idx (>= n,) int, out (H,)."""
    H = out.shape[0]
    if n == 0:
        out[:] = 0
        return
    k = 0
    if n >= 4:
        w0, w1, w2, w3 = src[idx[0]], src[idx[1]], src[idx[2]], src[idx[3]]
        for j in range(H):
            out[j] = (w0[j] + w1[j]) + (w2[j] + w3[j])
        k = 4
    else:
        w0 = src[idx[0]]
        for j in range(H):
            out[j] = w0[j]
        k = 1
    while k + 4 <= n:
        w0, w1, w2, w3 = src[idx[k]], src[idx[k + 1]], src[idx[k + 2]], src[idx[k + 3]]
        for j in range(H):
            out[j] += (w0[j] + w1[j]) + (w2[j] + w3[j])
        k += 4
    while k < n:
        w0 = src[idx[k]]
        for j in range(H):
            out[j] += w0[j]
        k += 1


@njit(**JIT)
def binary_bias_act(W, cols, counts, b, h, dact, act):
    """h = activation(x W + b), dact its derivative, for 0/1 x given by its ones
    (``binary_rows``): (DENSE-5), then ``fused.bias_act`` (DENSE-1) (ACT-*), one row at a time
    while it is in cache. W (D, H), b (H,), h and dact (B, H): out. act: the activation's
    number in ``fused.ACTIVATION_CODES``."""
    for i in range(h.shape[0]):
        sum_rows(W, cols[i], counts[i], h[i])  # (DENSE-5): x_i W
        bias_act(h[i:i + 1], b, dact[i:i + 1], act)  # + b, activation, derivative


@njit(**JIT)
def binary_weight_grad(g, cols, counts, lo, hi, dW, starts, ptr, rows):
    """dW[p] = x[:, p]^T g for lo <= p < hi, for 0/1 x given by its ones: the sum of the rows
    g[i] of the examples i with x[i, p] = 1 (DENSE-5), in increasing i; zeros where none.

    g (B, H): dL/da. cols, counts from ``binary_rows``. dW (D, H): rows lo..hi-1 written.
    Scratch: starts (B,) int64, ptr (>= hi - lo + 1,) int64, rows (>= the ones in the range,
    at most B (hi - lo)) int32.
    """
    B = counts.shape[0]
    m = hi - lo
    for q in range(m + 1):
        ptr[q] = 0
    for i in range(B):  # count each pixel's ones, remembering where each row's range starts
        c, n = cols[i], counts[i]
        k = np.searchsorted(c[:n], lo)
        starts[i] = k
        while k < n and c[k] < hi:
            ptr[c[k] - lo + 1] += 1
            k += 1
    for q in range(m):
        ptr[q + 1] += ptr[q]
    for i in range(B):  # list the examples of each pixel; ptr[q] moves to the end of q's list
        c, n, k = cols[i], counts[i], starts[i]
        while k < n and c[k] < hi:
            q = c[k] - lo
            rows[ptr[q]] = i
            ptr[q] += 1
            k += 1
    start = 0
    for q in range(m):
        end = ptr[q]
        sum_rows(g, rows[start:end], end - start, dW[lo + q])  # (DENSE-5): x[:, p]^T g
        start = end
