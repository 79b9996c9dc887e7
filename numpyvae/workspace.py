"""The fused engine's buffers: every array one training step writes, made once per batch size.

``Workspace`` holds the activations and gradients of one batch size B (rows are examples);
``Ones`` the positions of the ones of a 0/1 batch (DENSE-5); ``DenseViews`` one dense layer's
named views into the parameter and gradient buffers. ``numpyvae.fast`` allocates them and
reuses them at every step, so that a step allocates nothing.
"""

from __future__ import annotations

import numpy as np

from .layers import Dense


class Workspace:
    """Every activation and gradient buffer of one batch size B (rows are examples)."""

    def __init__(self, B: int, enc: list[int], dec: list[int], D: int, J: int, n_heads: int,
                 dtype: np.dtype):
        def e(*shape):
            return np.empty(shape, dtype)

        self.enc_h = [e(B, w) for w in enc]  # activations; later, the gradients dL/dh and dL/da
        self.enc_d = [e(B, w) for w in enc]  # activation derivatives
        self.dec_h = [e(B, w) for w in dec]
        self.dec_d = [e(B, w) for w in dec]
        # mu and logvar side by side: one product h @ [W_mu | W_logvar] fills both, and one
        # product [dL/dmu | dL/dlogvar] @ [W_mu | W_logvar]^T gives dL/dh summed over both
        self.heads_out, self.dheads = e(B, 2 * J), e(B, 2 * J)
        self.mu, self.logvar = self.heads_out[:, :J], self.heads_out[:, J:]
        self.dmu, self.dlogvar = self.dheads[:, :J], self.dheads[:, J:]
        self.std, self.z, self.dz = e(B, J), e(B, J), e(B, J)
        self.kl, self.recon = e(B), e(B)
        self.neg_L = e(B)  # k samples, IWAE: -L_k per example
        self.heads = [e(B, D) for _ in range(n_heads)]  # logits or (mean, logvar), then their grads
        self.tmp = e(D)  # one row of per-pixel loss terms
        self.db_scratch = [e(D) for _ in range(n_heads)]  # bias grads thrown away by loss()
        self.second = e(B * max([J, *enc, *dec]))  # the second of two summed input gradients
        # an input gradient computed transposed (float32 batches under 128 rows only): made on
        # first use, so that large evaluation batches do not carry it
        self.transposed: np.ndarray | None = None
        self._transposed_size, self._dtype = B * max([1, *enc, *dec]), dtype
        self.tasks: dict = {}  # pooled kernel calls on these buffers (kernels.pool.Task)
        self.ones: Ones | None = None  # where 0/1 data is 1 (DENSE-5), made on first use
        self.x_is_binary = False  # the last forward pass took the first layer from x's ones
        self.x: np.ndarray | None = None  # copies of inputs that arrive non-contiguous or cast
        self.eps: np.ndarray | None = None
        self.w: np.ndarray | None = None  # k samples: each decoder row's gradient weight
        self.ratio: np.ndarray | None = None  # and its log p(z) - log q(z|x)

    def second_of(self, shape) -> np.ndarray:
        return self.second[: shape[0] * shape[1]].reshape(shape)

    def transposed_of(self, shape) -> np.ndarray:
        if self.transposed is None:
            self.transposed = np.empty(self._transposed_size, self._dtype)
        return self.transposed[: shape[0] * shape[1]].reshape(shape)


class Ones:
    """The ones of a (B, D) batch of 0/1 data, each row's positions in ``cols[i, :counts[i]]``
    (``kernels.binary_rows``), and the scratch of ``kernels.binary_weight_grad`` for up to
    ``chunks`` threads (DENSE-5)."""

    def __init__(self, B: int, D: int, chunks: int):
        self.cols, self.counts = np.empty((B, D), np.int32), np.empty(B, np.int64)
        self.flags = np.ones(chunks, np.int64)  # pooled: 1 where a chunk's rows were 0/1
        self.starts = np.empty((chunks, B), np.int64)
        self.ptr = np.empty(D + chunks, np.int64)
        self.rows = np.empty(B * D, np.int32)


class DenseViews:
    """One dense layer's views, made once: weights, bias, their gradients, and the transposed
    weights that (DENSE-4) reads."""

    __slots__ = ("W", "b", "gW", "gb", "WT")

    def __init__(self, layer: Dense, params, grads):
        self.W, self.b = params[layer.W], params[layer.b]
        self.gW, self.gb = grads[layer.W], grads[layer.b]
        self.WT = self.W.T  # a view: BLAS reads it transposed, nothing is copied
