"""The fused training step: BLAS for the matrix products, ``numpyvae.kernels`` for the rest.

``FastEngine.forward_backward`` computes exactly what ``network.forward_backward`` computes (the
tests compare every gradient), but

* every product is ``np.matmul(a, b, out=buffer)``; the backward products take transposed
  *views* (``h.T``, ``W.T``), which BLAS reads directly, never copies;
* everything between two products is one Numba kernel: bias + activation + its derivative,
  loss + its gradient + the bias gradient, reparameterisation + KL + their gradients;
* every buffer is allocated once per batch size and reused: after the first step of a given
  batch size, a step allocates no array (``tests/test_fast.py`` checks with ``tracemalloc``);
* a layer's activation buffer is reused for the gradient flowing into it, once the weight
  gradient that reads the activation has been computed;
* the two latent heads are one product, h @ [W_mu | W_logvar], and so are their gradients;
* on 0/1 data (binarised MNIST) the first layer's two products are sums of rows of W and of
  dL/da at the data's ones (DENSE-5, ``kernels.binary``): an eighth of the additions and no
  multiplication. Every batch is checked; any other value takes BLAS;
* for small float32 batches an input gradient G W^T (DENSE-4) is computed as W G^T, which
  OpenBLAS does faster, and transposed back by the kernel that follows it: the same numbers.

The buffers are in ``numpyvae.workspace``. ``FastAdam`` (``numpyvae.fast_adam``) is
``optim.Adam`` with its seven NumPy passes over the flat buffers fused into one. It runs once
over the whole buffer after the backward pass, on BLAS's two threads split by the rows of each
weight matrix (``weight_blocks``), as OpenBLAS split the weight gradients: each thread updates
what its own core has just written. (Updating each layer during the
backward pass, while its gradient is still in cache, was tried and measured: no faster with one
BLAS thread, and in some runs much slower with two, where half of each gradient had just been
written by BLAS's other thread and had to move between the cores.)
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict

import numpy as np

from . import kernels, ops
from .fast_adam import FastAdam
from .kernels import pool as blas_pool
from .layers import Layout
from .workspace import DenseViews, Ones, Workspace

ACTIVATION_KERNELS = {
    "softplus": kernels.bias_softplus,
    "relu": kernels.bias_relu,
    "tanh": kernels.bias_tanh,
}
MAX_WORKSPACES = 4  # batch sizes whose buffers are kept (training size, last batch, eval, ...)
# 0/1 batches with ones in more than this share of their values take BLAS: the sums of rows
# cost in proportion to the ones, BLAS does not (bench_parts.py: at batch 100 the sums are 3x
# faster at MNIST's 13 %, 1.3x at 25 %, as slow as BLAS at 35-40 %)
MAX_ONES_FRACTION = 0.25
# float32: dL/dh = G W^T (DENSE-4) for G of fewer rows than TRANSPOSED_MAX_ROWS and at least
# TRANSPOSED_MIN_COLS columns is computed transposed, W G^T, then transposed back: OpenBLAS is
# faster that way round by more than the transposition costs (bench_parts.py, "Input
# gradients", this machine: 1.1-1.5x for 784 columns at batch 32-100, 1.1x for 500 at 64-100;
# about even or slower for 256 columns or fewer, and from 128 rows)
TRANSPOSED_MAX_ROWS = 128
TRANSPOSED_MIN_COLS = 400


class FastEngine:
    """The engine interface of ``network.ReferenceEngine``, fused: same methods, same results.

    >>> engine = FastEngine(layout, params, grads)
    >>> loss, recon, kl = engine.forward_backward(X, eps, beta=1.0)   # same as the reference

    ``params`` and ``grads`` are ``numpyvae.params.Parameters`` with the layout's shapes;
    gradients land in ``grads.flat`` through its named views.
    """

    def __init__(self, layout: Layout, params, grads, objective: str = "elbo"):
        """``objective``: what eps of shape (k, B, J) trains, "elbo" (ELBO-4) or "iwae"
        (IWAE-1), as in ``network.ReferenceEngine``."""
        if layout.activation not in ACTIVATION_KERNELS:
            raise ValueError(
                f"activation {layout.activation!r} has no fused kernel; "
                f"choose one of {sorted(ACTIVATION_KERNELS)}"
            )
        if params.dtype != grads.dtype or params.shapes != grads.shapes:
            raise ValueError("params and grads must share one layout and dtype")
        if params.shapes != layout.shapes():
            raise ValueError("params do not have the layout's shapes")
        self.layout = layout
        self.objective = objective
        self.params = params
        self.grads = grads
        self.dtype = np.dtype(params.dtype)
        self.activate = ACTIVATION_KERNELS[layout.activation]
        self.binary_activate = kernels.binary_bias_act  # sums of rows (DENSE-5) + activation
        self.act_code = kernels.ACTIVATION_CODES[layout.activation]
        # float32 kernels run on BLAS's own threads where that works (kernels/pool.py); the
        # results are bitwise the serial ones. None: every kernel serial.
        self.pool = blas_pool.get() if self.dtype == np.float32 else None
        # 0/1 data: the first layer's two products as sums of rows (DENSE-5), checked every
        # batch (other data takes BLAS). NUMPYVAE_BINARY_INPUT=0 or False: always BLAS.
        self.binary_input = os.environ.get("NUMPYVAE_BINARY_INPUT", "1") != "0"
        # input gradients of small batches as W G^T (``_grad_below``): float32 only
        self.transposed_grads = self.dtype == np.float32
        self.gaussian = layout.gaussian

        def dense(layers):
            return [DenseViews(layer, params, grads) for layer in layers]

        self.enc, self.dec = dense(layout.enc_hidden), dense(layout.dec_hidden)
        self.mu, self.logvar = dense(layout.enc_heads)
        # [W_mu | W_logvar] and its gradient: the two heads' weights are one block of the
        # buffers (Parameters(..., side_by_side=layout.side_by_side())), so one product does both
        mu_W = layout.enc_heads[0].W
        if mu_W not in params.blocks or mu_W not in grads.blocks:
            raise ValueError("params and grads must hold W_mu and W_logvar side by side: "
                             "Parameters(layout.shapes(), dtype, "
                             "side_by_side=layout.side_by_side()), as VAE builds them")
        self.heads_W, self.heads_gW = params.blocks[mu_W], grads.blocks[mu_W]
        self.heads = dense([hd for hd in layout.dec_heads if hd.W is not None])  # the products
        # every decoder output's bias and its gradient (the shared log-variance is one alone)
        self.out_b = [params[hd.b] for hd in layout.dec_heads]
        self.out_gb = [grads[hd.b] for hd in layout.dec_heads]
        self.shared_logvar = layout.shared_logvar
        self.log_floor = (None if layout.log_var_floor is None
                          else self.dtype.type(layout.log_var_floor))
        if self.log_floor is not None and not np.isfinite(
                np.exp(-np.float64(self.log_floor)).astype(self.dtype)):
            raise ValueError(f"a variance floor of {math.exp(layout.log_var_floor):.3g} has a "
                             f"reciprocal beyond {self.dtype.name}'s range; use a floor above "
                             f"{1 / np.finfo(self.dtype).max:.3g} or dtype='float64'")
        self.D, self.J = layout.dec_heads[0].fan_out, layout.enc_heads[0].fan_out
        self._workspaces: OrderedDict[int, Workspace] = OrderedDict()

    def weight_blocks(self) -> list[tuple[int, int, int]]:
        """(start, rows, cols) in ``params.flat`` of every weight matrix whose gradient one
        product x^T G writes (DENSE-2), the latent heads' side-by-side block as one: the split
        ``FastAdam.split_rows`` follows."""
        flat = self.params.flat
        blocks = []
        for W in ([layer.W for layer in self.enc] + [self.heads_W]
                  + [layer.W for layer in self.dec + self.heads]):
            start = (W.ctypes.data - flat.ctypes.data) // W.itemsize
            if W.flags.c_contiguous and 0 <= start and start + W.size <= flat.size:
                blocks.append((start, *W.shape))
        return blocks

    # ------------------------------------------------------------------ buffers
    def _workspace(self, B: int) -> Workspace:
        ws = self._workspaces.get(B)
        if ws is None:
            ws = Workspace(B, [layer.W.shape[1] for layer in self.enc],
                            [layer.W.shape[1] for layer in self.dec],
                            self.D, self.J, len(self.out_b), self.dtype)
            self._workspaces[B] = ws
            while len(self._workspaces) > MAX_WORKSPACES:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(B)
        return ws

    def _inputs(self, X, eps) -> tuple[np.ndarray, np.ndarray, Workspace]:
        """X and eps as C-contiguous arrays of the model's dtype (copied into the batch size's
        workspace if they are not), and that workspace."""
        X, eps = np.asarray(X), np.asarray(eps)
        B = X.shape[0] if X.ndim else 0
        if X.shape != (B, self.D) or eps.shape != (B, self.J) or B == 0:
            raise ValueError(
                f"X has shape {X.shape} and eps {eps.shape}; expected (B, {self.D}) and "
                f"(B, {self.J}) with the same B >= 1"
            )
        ws = self._workspace(B)
        if X.dtype != self.dtype or not X.flags.c_contiguous:
            if ws.x is None:
                ws.x = np.empty((B, self.D), self.dtype)
            np.copyto(ws.x, X, casting="same_kind")
            X = ws.x
        if eps.dtype != self.dtype or not eps.flags.c_contiguous:
            if ws.eps is None:
                ws.eps = np.empty((B, self.J), self.dtype)
            np.copyto(ws.eps, eps, casting="same_kind")
            eps = ws.eps
        return X, eps, ws

    # ------------------------------------------------------------------ passes
    def _hidden(self, h, layers, outs, dacts, tasks: dict):
        """Hidden layers: h @ W into each layer's buffer, then bias + activation + derivative
        in one kernel (DENSE-1) (ACT-1..6); returns the last activation (h itself if none).
        ``tasks``: the workspace's pooled calls."""
        for layer, out, dact in zip(layers, outs, dacts, strict=True):
            np.matmul(h, layer.W, out=out)  # (DENSE-1); the kernel adds b
            if self.pool is None or out.size < blas_pool.MIN_POOLED:
                self.activate(out, layer.b, dact)
            else:  # the same kernel, rows split between BLAS's threads
                task = tasks.get(("bias_act", id(out)))
                if task is None:
                    task = tasks[("bias_act", id(out))] = self.pool.bias_act(self.activate, out,
                                                                             layer.b, dact)
                self.pool.run(task)
            h = out
        return h

    def _encoder_hidden(self, x, ws: Workspace):
        """The encoder's hidden layers (``_hidden``), the first one from x's ones if x is 0/1
        (``ws.x_is_binary``); returns the last activation."""
        ws.x_is_binary = self._binary_first_layer(x, ws)
        if ws.x_is_binary:
            return self._hidden(ws.enc_h[0], self.enc[1:], ws.enc_h[1:], ws.enc_d[1:], ws.tasks)
        return self._hidden(x, self.enc, ws.enc_h, ws.enc_d, ws.tasks)

    def _binary_first_layer(self, x, ws: Workspace) -> bool:
        """If x is 0/1, with ones in at most ``MAX_ONES_FRACTION`` of its values: the first
        layer's activation and derivative into ``ws.enc_h[0]``, ``ws.enc_d[0]``, with x W summed
        from the rows of W at x's ones (DENSE-5) instead of a product, and True. Else (or
        switched off) False, and the caller takes BLAS."""
        if (not self.binary_input or not self.enc or x.dtype != self.dtype
                or not x.flags.c_contiguous):
            return False
        layer, h, dact = self.enc[0], ws.enc_h[0], ws.enc_d[0]
        if ws.ones is None:
            ws.ones = Ones(*x.shape, self.pool.max_threads if self.pool else 1)
        ones = ws.ones
        if self.pool is None or len(h) < blas_pool.MIN_POOLED_ROWS:
            if not kernels.binary_rows(x, ones.cols, ones.counts,
                                       int(MAX_ONES_FRACTION * x.size)):
                return False
            self.binary_activate(layer.W, ones.cols, ones.counts, layer.b, h, dact, self.act_code)
            return True
        task = ws.tasks.get("binary_act")  # the same, rows split between BLAS's threads
        if task is None:
            task = ws.tasks["binary_act"] = self.pool.binary_act(
                ACTIVATION_KERNELS[self.layout.activation], layer.W, layer.b, h, dact, ones.cols,
                ones.counts, ones.flags, MAX_ONES_FRACTION)
        ones.flags.fill(1)
        task.call[0] = x.ctypes.data
        self.pool.run(task)
        return bool(ones.flags.all())

    def _forward(self, x, eps, ws: Workspace, head_bias_grads) -> None:
        """Encoder, latent layer, decoder, loss; leaves dL/d(head outputs) in ``ws.heads``."""
        h = self._encoder_hidden(x, ws)
        self._heads_forward(h, ws)
        kernels.latent_forward(ws.mu, ws.logvar, self.mu.b, self.logvar.b, eps,
                               ws.z, ws.std, ws.kl)
        self._decode_loss(x, ws, head_bias_grads)

    def _heads_forward(self, h, ws: Workspace) -> None:
        """mu and logvar before their biases, side by side in ``ws.heads_out``: one product
        h @ [W_mu | W_logvar] (DENSE-1) instead of two (measured in bench_parts.py)."""
        np.matmul(h, self.heads_W, out=ws.heads_out)

    def _decode_loss(self, x, ws: Workspace, head_bias_grads, weight=None) -> None:
        """Decoder from ``ws.z`` and the loss: -log p(x|z) per example into ``ws.recon``;
        dL/d(head outputs) with each row's ``weight`` (default 1/B) into ``ws.heads``."""
        h = self._hidden(ws.z, self.dec, ws.dec_h, ws.dec_d, ws.tasks)
        for out, head in zip(ws.heads[: len(self.heads)], self.heads, strict=True):
            np.matmul(h, head.W, out=out)
        if self.shared_logvar:
            ws.heads[1].fill(0)  # a = 0 + b: the kernel adds the shared bias (GAU-6)
        # (ELBO-3): every example has weight 1/B
        inv_b = self.dtype.type(1.0 / x.shape[0]) if weight is None else weight
        if self.gaussian and self.log_floor is not None:
            kernels.gaussian_floor_loss_grad(ws.heads[0], ws.heads[1], *self.out_b, x, inv_b,
                                             self.log_floor, ws.recon, *head_bias_grads, ws.tmp)
        elif self.gaussian:
            mean_b, logvar_b = self.out_b
            kernels.gaussian_loss_grad(ws.heads[0], ws.heads[1], mean_b, logvar_b,
                                       x, inv_b, ws.recon, *head_bias_grads, ws.tmp)
        elif (self.pool is None or x.size < blas_pool.MIN_POOLED
              or not x.flags.c_contiguous or x.dtype != self.dtype):
            kernels.bernoulli_loss_grad(ws.heads[0], self.heads[0].b, x, inv_b, ws.recon,
                                        head_bias_grads[0], ws.tmp)
        else:  # the same, rows split between BLAS's threads, then the bias gradient
            logits = ws.heads[0]
            task = ws.tasks.get("bernoulli")
            if task is None:
                task = ws.tasks["bernoulli"] = self.pool.bernoulli(logits, self.heads[0].b,
                                                                   ws.recon)
            task.call[0] = x.ctypes.data
            task.weight[0] = inv_b
            self.pool.run(task)
            kernels.column_sum(logits, head_bias_grads[0])  # (DENSE-3)

    def _input_grad(self, douts, layers, out: np.ndarray, ws: Workspace) -> None:
        """out = sum_k douts[k] @ W_k.T  (DENSE-4), summed over one or two heads."""
        np.matmul(douts[0], layers[0].WT, out=out)
        if len(douts) == 2:
            second = ws.second_of(out.shape)
            np.matmul(douts[1], layers[1].WT, out=second)
            np.add(out, second, out=out)

    def _backward(self, x, eps, ws: Workspace, beta: float) -> None:
        """Every gradient, from the decoder's output back to the first layer."""
        self._decoder_backward(ws)
        # latent layer: reparameterisation + KL (weight beta / B)
        kernels.latent_backward(ws.dz, ws.mu, ws.logvar, ws.std, eps,
                                self.dtype.type(beta / x.shape[0]), ws.dmu, ws.dlogvar,
                                self.mu.gb, self.logvar.gb)
        self._encoder_backward(x, ws)

    def _decoder_backward(self, ws: Workspace) -> None:
        """From dL/d(head outputs) in ``ws.heads`` (their bias gradients already in grads) to
        dL/dz in ``ws.dz``, every decoder gradient on the way."""
        h = ws.dec_h[-1] if self.dec else ws.z
        douts = ws.heads[: len(self.heads)]  # not the shared log-variance: it reads no h
        for dout, head in zip(douts, self.heads, strict=True):
            np.matmul(h.T, dout, out=head.gW)  # (DENSE-2)
        if not self.dec:
            self._input_grad(douts, self.heads, ws.dz, ws)
            return
        # h is dead now: its buffer receives dL/dh, then dL/da
        if len(douts) == 1:
            self._grad_below(douts[0], self.heads[0].W, self.dec[-1], ws.dec_h[-1],
                             ws.dec_d[-1], ws)
        else:
            self._input_grad(douts, self.heads, ws.dec_h[-1], ws)
            kernels.backward_bias(ws.dec_h[-1], ws.dec_d[-1], self.dec[-1].gb)
        for i in reversed(range(len(self.dec))):
            layer, g = self.dec[i], ws.dec_h[i]  # g: dL/da
            h_in = ws.dec_h[i - 1] if i > 0 else ws.z
            np.matmul(h_in.T, g, out=layer.gW)  # (DENSE-2)
            if i > 0:
                self._grad_below(g, layer.W, self.dec[i - 1], ws.dec_h[i - 1], ws.dec_d[i - 1],
                                 ws)
            else:
                np.matmul(g, layer.WT, out=ws.dz)  # (DENSE-4)

    def _encoder_backward(self, x, ws: Workspace) -> None:
        """From dL/dmu, dL/dlogvar in ``ws.dmu``, ``ws.dlogvar`` (their bias gradients already
        in grads) to every encoder gradient."""
        h = ws.enc_h[-1] if self.enc else x
        np.matmul(h.T, ws.dheads, out=self.heads_gW)  # (DENSE-2): both heads in one product
        if not self.enc:
            return  # no input gradient for the data
        # (DENSE-4): dL/dh = dL/dmu W_mu^T + dL/dlogvar W_logvar^T, summed inside one product
        self._grad_below(ws.dheads, self.heads_W, self.enc[-1], ws.enc_h[-1], ws.enc_d[-1], ws)
        for i in reversed(range(len(self.enc))):
            layer, g = self.enc[i], ws.enc_h[i]  # g: dL/da
            if i == 0 and ws.x_is_binary and len(x) >= blas_pool.MIN_POOLED_ROWS:
                self._binary_weight_grad(g, layer, ws)  # (DENSE-5)
            else:  # (below 16 rows BLAS's x^T g is as fast: bench_parts.py)
                h_in = ws.enc_h[i - 1] if i > 0 else x
                np.matmul(h_in.T, g, out=layer.gW)  # (DENSE-2)
            if i > 0:  # the first layer needs no dL/dx
                self._grad_below(g, layer.W, self.enc[i - 1], ws.enc_h[i - 1], ws.enc_d[i - 1],
                                 ws)

    def _grad_below(self, g, W, below: DenseViews, dh, dact, ws: Workspace) -> None:
        """dL/da of the hidden layer ``below`` into dh (its activation buffer, dead by now) and
        its bias gradient: dL/dh = g W^T (DENSE-4), times its activation's derivative dact,
        summed over rows (``kernels.backward_bias``).

        In float32, for g of fewer than ``TRANSPOSED_MAX_ROWS`` rows (and not too few columns),
        the product is computed transposed, W g^T, and the kernel transposes it back: OpenBLAS
        computes it faster that way round for few rows (``bench_parts.py``, "Input gradients"),
        and each element is the same dot product (with OpenBLAS 0.3.31's float32 kernels, the
        same bits; its float64 kernels round the two ways differently, so float64, which is for
        gradient checks, keeps G W^T)."""
        if (self.transposed_grads and g.shape[0] < TRANSPOSED_MAX_ROWS
                and g.shape[1] >= TRANSPOSED_MIN_COLS):
            dh_t = ws.transposed_of(dh.shape[::-1])
            np.matmul(W, g.T, out=dh_t)  # (DENSE-4), transposed: (g W^T)^T = W g^T
            kernels.backward_bias_transposed(dh_t, dact, below.gb, dh)
        else:
            np.matmul(g, W.T, out=dh)  # (DENSE-4)
            kernels.backward_bias(dh, dact, below.gb)

    def _binary_weight_grad(self, g, layer: DenseViews, ws: Workspace) -> None:
        """The first layer's x^T g for 0/1 x: row p of dW sums the rows of g = dL/da of the
        examples whose pixel p is 1 (DENSE-5), from the ones the forward pass listed."""
        ones = ws.ones
        if self.pool is None:  # (the caller takes BLAS below MIN_POOLED_ROWS rows)
            kernels.binary_weight_grad(g, ones.cols, ones.counts, 0, layer.W.shape[0], layer.gW,
                                       ones.starts[0], ones.ptr, ones.rows)
            return
        task = ws.tasks.get("binary_grad")  # the same, pixels split between BLAS's threads
        if task is None:
            task = ws.tasks["binary_grad"] = self.pool.binary_grad(
                g, ones.cols, ones.counts, layer.gW, ones.starts, ones.ptr, ones.rows)
        self.pool.run(task)

    # ------------------------------------------------------------------ k samples per x
    def _forward_backward_k(self, X, eps, beta: float) -> tuple[float, float, float]:
        """``network.forward_k`` + ``backward_k``, fused: the encoder on B rows, the decoder on
        k * B (sample-major: row i * B + b is sample i of example b)."""
        X, eps = np.asarray(X), np.asarray(eps)
        B = X.shape[0] if X.ndim == 2 else 0
        if (X.shape != (B, self.D) or eps.ndim != 3 or eps.shape[1:] != (B, self.J)
                or B == 0 or eps.shape[0] == 0):
            raise ValueError(f"X has shape {X.shape} and eps {eps.shape}; expected (B, {self.D}) "
                             f"and (k, B, {self.J}) with the same B >= 1 and k >= 1")
        k = eps.shape[0]
        x, _, ws = self._inputs(X, eps[0])  # the encoder's workspace (and X cast if needed)
        eps = np.ascontiguousarray(eps, dtype=self.dtype)
        wk = self._workspace(k * B)  # the decoder's
        # (k = 1: ws is wk, one workspace for both sides; nothing below reads a buffer of one
        # side that the other side writes)
        if wk.x is None:
            wk.x = np.empty((k * B, self.D), self.dtype)
        wk.x.reshape(k, B, self.D)[...] = x  # each sample's row of data
        if wk.w is None:
            wk.w = np.empty(k * B, self.dtype)
            wk.ratio = np.empty(k * B, self.dtype)
        # encoder and the k samples of z
        h = self._encoder_hidden(x, ws)
        self._heads_forward(h, ws)
        kernels.latent_forward_k(ws.mu, ws.logvar, self.mu.b, self.logvar.b, eps, wk.z,
                                 ws.std, ws.kl, wk.ratio)
        iwae = self.objective == "iwae"
        inv_b = self.dtype.type(1.0 / B)
        if iwae:  # weight 1 now; w~_i / B once every sample's nll is known (IWAE-6)
            self._decode_loss(wk.x, wk, wk.db_scratch, weight=self.dtype.type(1.0))
            kernels.iwae_weights(wk.recon, wk.ratio, k, inv_b, wk.w, ws.neg_L)
            for dout, gb in zip(wk.heads, self.out_gb, strict=True):
                kernels.scale_rows(dout, wk.w, gb)  # (IWAE-6)
            loss = kernels.mean64(ws.neg_L)
        else:  # every sample weighs 1 / (k B)  (ELBO-4)
            self._decode_loss(wk.x, wk, self.out_gb,
                              weight=self.dtype.type(1.0 / (k * B)))
        recon, kl = kernels.mean64(wk.recon), kernels.mean64(ws.kl)
        if not iwae:
            loss = recon + beta * kl  # (ELBO-4)
        self._decoder_backward(wk)
        kernels.latent_backward_k(wk.dz, wk.z, ws.mu, ws.logvar, ws.std, eps, wk.w,
                                  self.dtype.type(beta / B), iwae, ws.dmu, ws.dlogvar,
                                  self.mu.gb, self.logvar.gb)
        self._encoder_backward(x, ws)
        return loss, recon, kl

    # ------------------------------------------------------------------ public
    def forward_backward(self, X, eps, beta: float = 1.0) -> tuple[float, float, float]:
        """Loss and all gradients for the batch X (B, D) with noise eps (B, J).

        Gradients are written into ``grads``. Returns (loss, recon, kl), batch means in nats per
        example, loss = recon + beta * kl  (ELBO-2) (ELBO-3), as ``network.forward_backward``.
        With eps (k, B, J): k samples per example under ``objective``, as
        ``network.forward_k``/``backward_k`` (ELBO-4) (IWAE-1).
        """
        if np.ndim(eps) == 3:
            return self._forward_backward_k(X, eps, beta)
        x, eps, ws = self._inputs(X, eps)
        self._forward(x, eps, ws, self.out_gb)
        self._backward(x, eps, ws, beta)
        recon, kl = kernels.mean64(ws.recon), kernels.mean64(ws.kl)
        return recon + beta * kl, recon, kl  # (ELBO-2)

    def loss(self, X, eps, beta: float = 1.0) -> tuple[float, float, float]:
        """Forward pass only: (loss, recon, kl) batch means; ``grads`` is left untouched."""
        x, eps, ws = self._inputs(X, eps)
        self._forward(x, eps, ws, ws.db_scratch)
        recon, kl = kernels.mean64(ws.recon), kernels.mean64(ws.kl)
        return recon + beta * kl, recon, kl

    def elbo_terms(self, X, eps) -> tuple[np.ndarray, np.ndarray]:
        """Per-example (reconstruction NLL, KL) in nats, shapes (B,), as new arrays."""
        x, eps, ws = self._inputs(X, eps)
        self._forward(x, eps, ws, ws.db_scratch)
        return ws.recon.copy(), ws.kl.copy()

    def decoder_nll(self, X, z) -> np.ndarray:
        """-log p(x|z) per row (B,) for given latents z (B, J): the decoder alone, as a new
        array. What the importance-weighted bound evaluates thousands of times per image."""
        x, z, ws = self._inputs(X, z)
        np.copyto(ws.z, z)
        self._decode_loss(x, ws, ws.db_scratch)
        return ws.recon.copy()

    def encode(self, X) -> tuple[np.ndarray, np.ndarray]:
        """X (B, D) -> (mu, logvar), each (B, J), as new arrays."""
        X = np.asarray(X)
        ws = self._workspace(X.shape[0])
        h = self._hidden(X, self.enc, ws.enc_h, ws.enc_d, ws.tasks)
        return h @ self.mu.W + self.mu.b, h @ self.logvar.W + self.logvar.b  # (DENSE-1)

    def decode(self, z) -> tuple[np.ndarray, ...]:
        """z (B, J) -> (logits,) or (mean, logvar), each (B, D), as new arrays; logvar is that
        of p(x|z), floored and shared as the layout says (as ``network.decode``)."""
        z = np.asarray(z)
        ws = self._workspace(z.shape[0])
        h = self._hidden(z, self.dec, ws.dec_h, ws.dec_d, ws.tasks)
        outs = [h @ head.W + head.b for head in self.heads]  # (DENSE-1)
        if self.shared_logvar:
            outs.append(np.broadcast_to(self.out_b[1], (len(z), self.D)).copy())  # (GAU-6)
        if self.log_floor is not None:
            outs[1] = ops.logvar_floor_forward(outs[1], self.log_floor)[0]  # (GAU-4)
        return tuple(outs)


FastEngine.Adam = FastAdam  # the optimiser that goes with this engine
