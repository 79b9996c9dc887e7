"""The reference engine: the VAE's computation, forward and backward, built from ``ops``.

Read this file top to bottom next to ``derivations/elbo.md``:

    x --enc.h1..--> h --enc.mu-->     mu  --\\
                      --enc.logvar--> logvar --> z = mu + exp(logvar/2) * eps   (REP-1)
    z --dec.h1..--> h --dec.out--> logits          (Bernoulli decoder)
                      --dec.mu / dec.logvar--> mean, logvar of x   (Gaussian decoder)

    loss = mean over the batch of [ -log p(x|z) + beta * KL(q(z|x) || N(0, I)) ]

The layers come from ``numpyvae.layers.Layout``; parameters are named views (see
``numpyvae.params``): each weight is (fan_in, fan_out), each bias (fan_out,).

Every function takes ``ops``, the module of forward/backward pairs it is built from:
``numpyvae.ops`` by default, or a student's module with the same names (``numpyvae.exercises``
assembles the VAE from a student's functions this way). ``numpyvae.fast`` is the fused twin of
``ReferenceEngine``, with the same methods.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import ops as reference_ops
from .layers import Layout
from .optim import Adam


def activation_pair(ops, name: str):
    """(forward, backward) of the activation ``name`` in ``ops``: e.g. softplus_forward/backward."""
    return getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")


def _mlp_forward(params, layers, h: np.ndarray, activation: str, ops):
    act_forward, _ = activation_pair(ops, activation)
    caches = []
    for layer in layers:
        a, dense_cache = ops.dense_forward(h, params[layer.W], params[layer.b])  # (DENSE-1)
        h, act_cache = act_forward(a)
        caches.append((layer, dense_cache, act_cache))
    return h, caches


def _mlp_backward(dh, caches, grads, activation: str, ops, need_dx: bool):
    _, act_backward = activation_pair(ops, activation)
    for i, (layer, dense_cache, act_cache) in reversed(list(enumerate(caches))):
        da = act_backward(dh, act_cache)
        dh, grads[layer.W][...], grads[layer.b][...] = ops.dense_backward(
            da, dense_cache, need_dx=need_dx or i > 0
        )
    return dh


def encode(params, layout: Layout, x: np.ndarray, ops=reference_ops):
    """x (B, D) -> mu (B, J), logvar (B, J), cache."""
    h, caches = _mlp_forward(params, layout.enc_hidden, x, layout.activation, ops)
    mu_layer, lv_layer = layout.enc_heads
    mu, mu_cache = ops.dense_forward(h, params[mu_layer.W], params[mu_layer.b])
    logvar, lv_cache = ops.dense_forward(h, params[lv_layer.W], params[lv_layer.b])
    return mu, logvar, (caches, mu_cache, lv_cache)


def decode(params, layout: Layout, z: np.ndarray, ops=reference_ops):
    """z (B, J) -> decoder outputs, cache.

    Bernoulli: outputs = (logits,), each (B, D). Gaussian: outputs = (mean, logvar), logvar
    the log-variance of p(x|z): floored (GAU-4) if the layout has a floor, and one value per
    pixel for every z (GAU-6) if it is shared. The cache's head list holds the dense heads.
    """
    h, caches = _mlp_forward(params, layout.dec_hidden, z, layout.activation, ops)
    outs, head_caches = [], []
    for head in layout.dec_heads:
        if head.W is None:  # the shared log-variance: a bias alone, no product with h
            outs.append(ops.shared_forward(params[head.b], len(z))[0])  # (GAU-6)
            continue
        out, cache = ops.dense_forward(h, params[head.W], params[head.b])
        outs.append(out)
        head_caches.append((head, cache))
    floor_cache = None
    if layout.log_var_floor is not None:
        s, floor_cache = ops.logvar_floor_forward(outs[1], layout.log_var_floor)  # (GAU-4)
        outs[1] = s
    return tuple(outs), (caches, head_caches, floor_cache)


def _output_backward(douts, layout: Layout, dec_cache, grads, ops) -> tuple[np.ndarray, ...]:
    """From dL/d(outputs) to dL/d(dense heads' outputs): back through the floor (GAU-5), and
    the shared log-variance's bias gradient written into ``grads`` (GAU-6); what is left is
    one gradient per dense head, in the order of the cache's heads."""
    floor_cache = dec_cache[2]
    if not layout.gaussian:
        return douts
    dmean, dlogvar = douts
    if floor_cache is not None:
        dlogvar = ops.logvar_floor_backward(dlogvar, floor_cache)  # (GAU-5)
    if layout.shared_logvar:
        grads[layout.dec_heads[1].b][...] = ops.shared_backward(dlogvar)  # (GAU-6)
        return (dmean,)
    return dmean, dlogvar


def decoder_mean(outputs: tuple[np.ndarray, ...], decoder: str) -> np.ndarray:
    """The mean of p(x|z): sigma(logits) for Bernoulli, the mean head for Gaussian."""
    return reference_ops.sigmoid(outputs[0]) if decoder == "bernoulli" else outputs[0]


def nll_forward(x: np.ndarray, outputs, decoder: str, ops=reference_ops):
    """-log p(x|z) per example (B,), and its cache."""
    if decoder == "bernoulli":
        return ops.bce_with_logits_forward(outputs[0], x)
    return ops.gaussian_nll_forward(x, outputs[0], outputs[1])


@dataclasses.dataclass
class ForwardCache:
    """What the forward pass keeps for ``backward``: the inputs, every op's cache, and the
    intermediate values a reader may want to look at (mu, logvar, z, the decoder's outputs)."""

    x: np.ndarray
    eps: np.ndarray
    beta: float
    layout: Layout
    mu: np.ndarray
    logvar: np.ndarray
    z: np.ndarray
    outputs: tuple[np.ndarray, ...]
    enc_cache: tuple
    rep_cache: tuple
    kl_cache: tuple
    dec_cache: tuple
    rec_cache: tuple


def forward(params, layout: Layout, x: np.ndarray, eps: np.ndarray, beta: float = 1.0,
            ops=reference_ops):
    """The batch loss. x (B, D), eps (B, J) -> (loss, recon, kl) per example, each (B,), and
    the cache for ``backward``; loss = recon + beta * kl is the negative ELBO for beta = 1."""
    mu, logvar, enc_cache = encode(params, layout, x, ops)
    z, rep_cache = ops.reparameterize_forward(mu, logvar, eps)  # (REP-1)
    kl, kl_cache = ops.kl_standard_normal_forward(mu, logvar)  # (KL-1)
    outputs, dec_cache = decode(params, layout, z, ops)
    recon, rec_cache = nll_forward(x, outputs, layout.decoder, ops)
    loss = recon + beta * kl  # (ELBO-2), per example
    cache = ForwardCache(x, eps, beta, layout, mu, logvar, z, outputs, enc_cache, rep_cache,
                         kl_cache, dec_cache, rec_cache)
    return loss, recon, kl, cache


def backward(cache: ForwardCache, grads, ops=reference_ops) -> None:
    """Every parameter gradient of the batch-mean loss, written into ``grads``."""
    B, beta, x, layout = cache.x.shape[0], cache.beta, cache.x, cache.layout
    ### BEGIN SOLUTION
    ### HINT: weight each example's NLL as the batch mean does, then the decoder's loss backward
    # each example's loss enters the batch mean with weight 1/B  (ELBO-3)
    drecon = np.full(B, 1.0 / B, dtype=x.dtype)
    if layout.decoder == "bernoulli":
        douts = (ops.bce_with_logits_backward(drecon, cache.rec_cache),)  # (BER-3)
    else:
        douts = ops.gaussian_nll_backward(drecon, cache.rec_cache)  # (GAU-2), (GAU-3)
    ### END SOLUTION
    # the floor (GAU-5) and the shared logvar (GAU-6)
    douts = _output_backward(douts, cache.layout, cache.dec_cache, grads, ops)
    hidden_caches, head_caches, _ = cache.dec_cache
    ### BEGIN SOLUTION
    ### HINT: each head's dense_backward into grads (DENSE-4); heads that read one h add;
    ### HINT: then _mlp_backward down to dz
    dh = 0
    for dout, (head, head_cache) in zip(douts, head_caches, strict=True):
        dh_head, grads[head.W][...], grads[head.b][...] = ops.dense_backward(dout, head_cache)
        dh = dh + dh_head  # both Gaussian heads read the same h: their gradients add
    dz = _mlp_backward(dh, hidden_caches, grads, layout.activation, ops, need_dx=True)
    ### END SOLUTION

    # two paths meet at mu and logvar: through the sample z, and through the KL term
    ### BEGIN SOLUTION
    ### HINT: dmu and dlogvar along the sample path and the KL path (weight beta/B each); paths add
    dmu, dlogvar = ops.reparameterize_backward(dz, cache.rep_cache)  # (REP-2), (REP-3)
    dmu_kl, dlogvar_kl = ops.kl_standard_normal_backward(
        np.full(B, beta / B, x.dtype), cache.kl_cache)  # (KL-2), (KL-3), weight beta/B
    dmu = dmu + dmu_kl
    dlogvar = dlogvar + dlogvar_kl
    ### END SOLUTION

    enc_caches, mu_cache, lv_cache = cache.enc_cache
    mu_layer, lv_layer = layout.enc_heads
    ### BEGIN SOLUTION
    ### HINT: both heads' dense_backward into grads; both read the same h, so add; then the encoder
    dh_mu, grads[mu_layer.W][...], grads[mu_layer.b][...] = ops.dense_backward(dmu, mu_cache)
    dh_lv, grads[lv_layer.W][...], grads[lv_layer.b][...] = ops.dense_backward(
        dlogvar, lv_cache
    )
    _mlp_backward(dh_mu + dh_lv, enc_caches, grads, layout.activation, ops, need_dx=False)
    ### END SOLUTION


_reference_backward = backward  # ReferenceEngine's default (its argument shadows the name)


# --------------------------------------------------------------------------- k samples per x
# The same pieces as ``backward`` above, as functions, for the k-sample objectives. ``backward``
# keeps its own copy because a student writes it in one piece (the exercise), and these two are
# solution regions too, so that the exercise file does not hand its answer out.
def decoder_backward(douts, dec_cache, grads, layout: Layout, ops=reference_ops) -> np.ndarray:
    """dL/d(decoder outputs) -> dL/dz; the decoder's gradients written into ``grads``."""
    douts = _output_backward(douts, layout, dec_cache, grads, ops)  # (GAU-5) (GAU-6)
    hidden_caches, head_caches, _ = dec_cache
    ### BEGIN SOLUTION
    ### HINT: what you wrote in backward, from the heads down to dz
    dh = 0
    for dout, (head, head_cache) in zip(douts, head_caches, strict=True):
        dh_head, grads[head.W][...], grads[head.b][...] = ops.dense_backward(dout, head_cache)
        dh = dh + dh_head  # (DENSE-4): the Gaussian heads read the same h
    dz = _mlp_backward(dh, hidden_caches, grads, layout.activation, ops, need_dx=True)
    ### END SOLUTION
    return dz


def encoder_backward(dmu, dlogvar, enc_cache, grads, layout: Layout, ops=reference_ops) -> None:
    """dL/dmu, dL/dlogvar (B, J) -> the encoder's gradients, written into ``grads``."""
    enc_caches, mu_cache, lv_cache = enc_cache
    mu_layer, lv_layer = layout.enc_heads
    ### BEGIN SOLUTION
    ### HINT: what you wrote in backward, from the two heads down to the first layer
    dh_mu, grads[mu_layer.W][...], grads[mu_layer.b][...] = ops.dense_backward(dmu, mu_cache)
    dh_lv, grads[lv_layer.W][...], grads[lv_layer.b][...] = ops.dense_backward(dlogvar, lv_cache)
    _mlp_backward(dh_mu + dh_lv, enc_caches, grads, layout.activation, ops, need_dx=False)
    ### END SOLUTION


@dataclasses.dataclass
class KSampleCache:
    """What ``forward_k`` keeps for ``backward_k``."""

    objective: str
    k: int
    beta: float
    layout: Layout
    mu: np.ndarray
    logvar: np.ndarray
    z: np.ndarray  # (k, B, J)
    w: np.ndarray  # (k, B): the weight of each sample in its example's gradient
    enc_cache: tuple
    rep_cache: tuple
    kl_cache: tuple
    ratio_cache: object
    dec_cache: tuple
    rec_cache: tuple


def forward_k(params, layout: Layout, x: np.ndarray, eps: np.ndarray, objective: str,
              beta: float = 1.0, ops=reference_ops):
    """k samples of z per example. x (B, D), eps (k, B, J) -> (loss, recon, kl, cache).

    objective "elbo": loss = mean over the k samples of -log p(x|z_i), plus beta * KL, per
    example (ELBO-4), the "VAE with k samples". objective "iwae": loss = -L_k (IWAE-1), the
    importance-weighted bound, estimated with these k samples (beta must be 1). recon (B,) is the
    mean of -log p(x|z_i) over the samples and kl (B,) the closed-form KL, for reporting.
    """
    k, B, J = eps.shape
    mu, logvar, enc_cache = encode(params, layout, x, ops)
    z, rep_cache = ops.reparameterize_forward(mu, logvar, eps)  # (REP-1), broadcast over k
    kl, kl_cache = ops.kl_standard_normal_forward(mu, logvar)  # (KL-1)
    outputs, dec_cache = decode(params, layout, z.reshape(k * B, J), ops)  # k*B decoder rows
    xs = np.broadcast_to(x, (k, *x.shape)).reshape(k * B, -1)
    nll, rec_cache = nll_forward(xs, outputs, layout.decoder, ops)
    nll = nll.reshape(k, B)
    ratio_cache = None
    if objective == "elbo":
        loss = nll.mean(axis=0) + beta * kl  # (ELBO-4)
        w = np.full((k, B), 1.0 / k, dtype=x.dtype)  # each sample's share of the gradient
    else:
        ratio, ratio_cache = ops.log_prior_ratio_forward(z, eps, logvar)  # (IWAE-4)
        L, w = ops.log_mean_exp_forward(-nll + ratio)  # (IWAE-1) (IWAE-2); w = softmax
        loss = -L
    cache = KSampleCache(objective, k, beta, layout, mu, logvar, z, w, enc_cache, rep_cache,
                         kl_cache, ratio_cache, dec_cache, rec_cache)
    return loss, nll.mean(axis=0), kl, cache


def backward_k(cache: KSampleCache, grads, ops=reference_ops) -> None:
    """Every parameter gradient of the batch mean of ``forward_k``'s loss, into ``grads``."""
    k, (B, J), layout = cache.k, cache.mu.shape, cache.layout
    dtype = cache.mu.dtype
    # dloss/dlog w_i = -w~_i / B for IWAE (IWAE-5) (IWAE-6); 1 / (k B) for the k-sample ELBO
    dnll = (cache.w / B).astype(dtype)
    if layout.decoder == "bernoulli":
        douts = (ops.bce_with_logits_backward(dnll.reshape(k * B), cache.rec_cache),)  # (BER-3)
    else:
        douts = ops.gaussian_nll_backward(dnll.reshape(k * B), cache.rec_cache)  # (GAU-2) (GAU-3)
    dz = decoder_backward(douts, cache.dec_cache, grads, layout, ops).reshape(k, B, J)
    if cache.objective == "iwae":
        # log w_i also holds log p(z_i) - log q(z_i|x): seeded with -w~_i / B (IWAE-6)
        dz_ratio, dlogvar_ratio = ops.log_prior_ratio_backward(-dnll, cache.ratio_cache)
        dz = dz + dz_ratio
    dmu_k, dlogvar_k = ops.reparameterize_backward(dz, cache.rep_cache)  # (REP-2) (REP-3)
    dmu, dlogvar = dmu_k.sum(axis=0), dlogvar_k.sum(axis=0)  # the k samples share mu, logvar
    if cache.objective == "iwae":
        dlogvar = dlogvar + dlogvar_ratio
    else:
        dmu_kl, dlogvar_kl = ops.kl_standard_normal_backward(
            np.full(B, cache.beta / B, dtype), cache.kl_cache)  # (KL-2) (KL-3)
        dmu, dlogvar = dmu + dmu_kl, dlogvar + dlogvar_kl
    encoder_backward(dmu, dlogvar, cache.enc_cache, grads, layout, ops)


def forward_backward(params, grads, layout: Layout, x: np.ndarray, eps: np.ndarray,
                     beta: float = 1.0, ops=reference_ops) -> tuple[float, float, float]:
    """One forward and backward pass; gradients are written into ``grads``.

    Returns (loss, recon, kl): batch means in nats per example.
    """
    loss, recon, kl, cache = forward(params, layout, x, eps, beta, ops)
    backward(cache, grads, ops)
    return float(loss.mean()), float(recon.mean()), float(kl.mean())


class ReferenceEngine:
    """The engine interface, in plain NumPy; ``numpyvae.fast.FastEngine`` has the same methods.

    >>> engine = ReferenceEngine(layout, params, grads)
    >>> loss, recon, kl = engine.forward_backward(X, eps, beta=1.0)   # grads written
    """

    Adam = Adam  # the optimiser that goes with this engine (fast.py pairs FastAdam)

    def __init__(self, layout: Layout, params, grads, ops=reference_ops, backward=None,
                 objective: str = "elbo"):
        """``ops``: the forward/backward pairs to build from; ``backward``: a function with the
        signature of this module's ``backward`` to use in its place (both for exercises).
        ``objective``: what eps of shape (k, B, J) trains, "elbo" (ELBO-4) or "iwae" (IWAE-1)."""
        self.layout, self.params, self.grads, self.ops = layout, params, grads, ops
        self._backward = _reference_backward if backward is None else backward
        self.objective = objective

    def forward_backward(self, x, eps, beta: float = 1.0) -> tuple[float, float, float]:
        """Batch-mean (loss, recon, kl) of x (B, D) with noise eps (B, J), or (k, B, J) for k
        samples per example under ``objective``; writes ``grads``."""
        if eps.ndim == 3:
            loss, recon, kl, kcache = forward_k(self.params, self.layout, x, eps,
                                                self.objective, beta, self.ops)
            backward_k(kcache, self.grads, self.ops)
        else:
            loss, recon, kl, cache = forward(self.params, self.layout, x, eps, beta, self.ops)
            self._backward(cache, self.grads, self.ops)
        return float(loss.mean()), float(recon.mean()), float(kl.mean())

    def elbo_terms(self, x, eps) -> tuple[np.ndarray, np.ndarray]:
        """Per-example (reconstruction NLL, KL) in nats, shapes (B,): the forward pass alone."""
        _, recon, kl, _ = forward(self.params, self.layout, x, eps, 1.0, self.ops)
        return recon, kl

    def decoder_nll(self, x, z) -> np.ndarray:
        """-log p(x|z) per row (B,) for given latents z (B, J): the decoder alone."""
        outputs, _ = decode(self.params, self.layout, z, self.ops)
        return nll_forward(x, outputs, self.layout.decoder, self.ops)[0]

    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """x (B, D) -> (mu, logvar), each (B, J)."""
        mu, logvar, _ = encode(self.params, self.layout, x, self.ops)
        return mu, logvar

    def decode(self, z) -> tuple[np.ndarray, ...]:
        """z (B, J) -> (logits,) or (mean, logvar), each (B, D)."""
        return decode(self.params, self.layout, z, self.ops)[0]
