"""The VAE's computation, forward and backward, built from the reference ops.

Read this file top to bottom next to ``derivations/elbo.md``:

    x --enc.h1..--> h --enc.mu-->     mu  --\
                      --enc.logvar--> logvar --> z = mu + exp(logvar/2) * eps   (REP-1)
    z --dec.h1..--> h --dec.out--> logits          (Bernoulli decoder)
                      --dec.mu / dec.logvar--> mean, logvar of x   (Gaussian decoder)

    loss = mean over the batch of [ -log p(x|z) + beta * KL(q(z|x) || N(0, I)) ]

Parameters are named views (see ``numpyvae.params``): each weight is (fan_in, fan_out), each
bias (fan_out,). This is the readable reference; ``numpyvae.fast`` is the fused twin.
"""

from __future__ import annotations

import numpy as np

from . import ops


def layer_shapes(
    n_input: int,
    hidden: tuple[int, ...],
    n_latent: int,
    decoder: str,
    decoder_hidden: tuple[int, ...] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Ordered name -> shape of every parameter, in forward order."""
    dec_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
    shapes: dict[str, tuple[int, ...]] = {}

    def dense(name: str, fan_in: int, fan_out: int) -> None:
        shapes[f"{name}.W"] = (fan_in, fan_out)
        shapes[f"{name}.b"] = (fan_out,)

    fan_in = n_input
    for i, width in enumerate(hidden, start=1):
        dense(f"enc.h{i}", fan_in, width)
        fan_in = width
    dense("enc.mu", fan_in, n_latent)
    dense("enc.logvar", fan_in, n_latent)
    fan_in = n_latent
    for i, width in enumerate(dec_hidden, start=1):
        dense(f"dec.h{i}", fan_in, width)
        fan_in = width
    if decoder == "bernoulli":
        dense("dec.out", fan_in, n_input)
    else:
        dense("dec.mu", fan_in, n_input)
        dense("dec.logvar", fan_in, n_input)
    return shapes


def _hidden_names(params, side: str) -> list[str]:
    """['enc.h1', 'enc.h2', ...] in forward order."""
    return [n[:-2] for n in params if n.startswith(f"{side}.h") and n.endswith(".W")]


def _mlp_forward(params, side: str, h: np.ndarray, activation: str):
    act_forward, _ = ops.ACTIVATIONS[activation]
    caches = []
    for name in _hidden_names(params, side):
        a, dense_cache = ops.dense_forward(h, params[f"{name}.W"], params[f"{name}.b"])
        h, act_cache = act_forward(a)
        caches.append((name, dense_cache, act_cache))
    return h, caches


def _mlp_backward(dh, caches, grads, activation: str, need_dx: bool):
    _, act_backward = ops.ACTIVATIONS[activation]
    for i, (name, dense_cache, act_cache) in reversed(list(enumerate(caches))):
        da = act_backward(dh, act_cache)
        dh, grads[f"{name}.W"][...], grads[f"{name}.b"][...] = ops.dense_backward(
            da, dense_cache, need_dx=need_dx or i > 0
        )
    return dh


def encode(params, x: np.ndarray, activation: str):
    """x (B, D) -> mu (B, J), logvar (B, J), cache."""
    h, caches = _mlp_forward(params, "enc", x, activation)
    mu, mu_cache = ops.dense_forward(h, params["enc.mu.W"], params["enc.mu.b"])
    logvar, lv_cache = ops.dense_forward(h, params["enc.logvar.W"], params["enc.logvar.b"])
    return mu, logvar, (caches, mu_cache, lv_cache)


def decode(params, z: np.ndarray, activation: str, decoder: str):
    """z (B, J) -> decoder outputs, cache.

    Bernoulli: outputs = (logits,), each (B, D). Gaussian: outputs = (mean, logvar).
    """
    h, caches = _mlp_forward(params, "dec", z, activation)
    heads = ("dec.out",) if decoder == "bernoulli" else ("dec.mu", "dec.logvar")
    outs, head_caches = [], []
    for head in heads:
        out, cache = ops.dense_forward(h, params[f"{head}.W"], params[f"{head}.b"])
        outs.append(out)
        head_caches.append((head, cache))
    return tuple(outs), (caches, head_caches)


def decoder_mean(outputs: tuple[np.ndarray, ...], decoder: str) -> np.ndarray:
    """The mean of p(x|z): sigma(logits) for Bernoulli, the mean head for Gaussian."""
    return ops.sigmoid(outputs[0]) if decoder == "bernoulli" else outputs[0]


def reconstruction_nll(x: np.ndarray, outputs, decoder: str):
    """-log p(x|z) per example (B,), and its cache."""
    if decoder == "bernoulli":
        return ops.bce_with_logits_forward(outputs[0], x)
    return ops.gaussian_nll_forward(x, outputs[0], outputs[1])


def forward_backward(
    params, grads, x: np.ndarray, eps: np.ndarray, activation: str, decoder: str, beta: float = 1.0
):
    """One forward and backward pass of the batch loss; gradients are written into ``grads``.

    x (B, D), eps (B, J). Returns (loss, recon, kl): batch means in nats per example, where
    loss = recon + beta * kl is the negative ELBO for beta = 1.
    """
    B = x.shape[0]
    mu, logvar, enc_cache = encode(params, x, activation)
    z, rep_cache = ops.reparameterize_forward(mu, logvar, eps)
    kl, kl_cache = ops.kl_standard_normal_forward(mu, logvar)
    outputs, dec_cache = decode(params, z, activation, decoder)
    recon, rec_cache = reconstruction_nll(x, outputs, decoder)
    loss = recon + beta * kl  # (ELBO-2), per example

    # backward: each example's loss enters the batch mean with weight 1/B  (ELBO-3)
    drecon = np.full(B, 1.0 / B, dtype=x.dtype)
    if decoder == "bernoulli":
        douts = (ops.bce_with_logits_backward(drecon, rec_cache),)
    else:
        douts = ops.gaussian_nll_backward(drecon, rec_cache)
    hidden_caches, head_caches = dec_cache
    dh = 0
    for dout, (head, cache) in zip(douts, head_caches, strict=True):
        dh_head, grads[f"{head}.W"][...], grads[f"{head}.b"][...] = ops.dense_backward(dout, cache)
        dh = dh + dh_head
    dz = _mlp_backward(dh, hidden_caches, grads, activation, need_dx=True)

    dmu, dlogvar = ops.reparameterize_backward(dz, rep_cache)
    dmu_kl, dlogvar_kl = ops.kl_standard_normal_backward(np.full(B, beta / B, x.dtype), kl_cache)
    dmu = dmu + dmu_kl
    dlogvar = dlogvar + dlogvar_kl

    enc_caches, mu_cache, lv_cache = enc_cache
    dh_mu, grads["enc.mu.W"][...], grads["enc.mu.b"][...] = ops.dense_backward(dmu, mu_cache)
    dh_lv, grads["enc.logvar.W"][...], grads["enc.logvar.b"][...] = ops.dense_backward(
        dlogvar, lv_cache
    )
    _mlp_backward(dh_mu + dh_lv, enc_caches, grads, activation, need_dx=False)
    return float(loss.mean()), float(recon.mean()), float(kl.mean())
