"""One description of the VAE's layers, made once from the config and read by everyone.

    x --enc_hidden[0..]--> h --enc_heads: mu, logvar--> z = mu + exp(logvar/2) * eps
    z --dec_hidden[0..]--> h --dec_heads: out (Bernoulli logits) | mu, logvar (Gaussian)
                                          | mu, and a shared logvar that ignores h (a Bias)

The parameters (``numpyvae.params``), both engines and the checkpoint reader take the layer
list from ``Layout``; nobody recovers the structure by parsing names. Parameter names are
``"<layer>.W"`` (fan_in, fan_out) and ``"<layer>.b"`` (fan_out,), in forward order; a ``Bias``
layer (the Gaussian decoder's shared log-variance, GAU-6) has only the ``.b``.
This module imports nothing of numpyvae but the config.
"""

from __future__ import annotations

import dataclasses

from .config import VAEConfig


@dataclasses.dataclass(frozen=True)
class Dense:
    """One affine layer y = x W + b (DENSE-1)."""

    name: str  # e.g. "enc.h1"
    fan_in: int
    fan_out: int

    @property
    def W(self) -> str:
        return f"{self.name}.W"

    @property
    def b(self) -> str:
        return f"{self.name}.b"


@dataclasses.dataclass(frozen=True)
class Bias:
    """A bias-only output y = 1 b^T, the same for every row (GAU-6): no weight, no input."""

    name: str  # "dec.logvar"
    fan_in: int  # the width of the layer it sits on (it reads nothing from it)
    fan_out: int

    W = None

    @property
    def b(self) -> str:
        return f"{self.name}.b"


@dataclasses.dataclass(frozen=True)
class Layout:
    """The layers of one VAE, grouped by role, in forward order."""

    enc_hidden: tuple[Dense, ...]  # activation after each
    enc_heads: tuple[Dense, Dense]  # mu, logvar (linear)
    dec_hidden: tuple[Dense, ...]  # activation after each
    dec_heads: tuple[Dense | Bias, ...]  # (out,) Bernoulli logits | (mu, logvar) Gaussian
    activation: str  # of every hidden layer, one of config.ACTIVATIONS
    decoder: str  # one of config.DECODERS
    log_var_floor: float | None = None  # c = log sigma^2_min of (GAU-4); None: no floor

    @property
    def shared_logvar(self) -> bool:
        """The Gaussian log-variance is one bias per pixel, not a head on h (GAU-6)."""
        return isinstance(self.dec_heads[-1], Bias)

    @property
    def gaussian(self) -> bool:
        return self.decoder == "gaussian"

    @property
    def layers(self) -> tuple[Dense, ...]:
        return (*self.enc_hidden, *self.enc_heads, *self.dec_hidden, *self.dec_heads)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Ordered name -> shape of every parameter, in forward order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            if layer.W is not None:
                shapes[layer.W] = (layer.fan_in, layer.fan_out)
            shapes[layer.b] = (layer.fan_out,)
        return shapes

    def side_by_side(self) -> tuple[tuple[str, str], ...]:
        """Weights stored as one block (``params.Parameters``): the latent heads' W_mu and
        W_logvar, so that h @ [W_mu | W_logvar] is one matrix product."""
        mu, logvar = self.enc_heads
        return ((mu.W, logvar.W),)

    @property
    def size(self) -> int:
        """Number of scalars in all parameters."""
        return sum(layer.fan_in * layer.fan_out * (layer.W is not None) + layer.fan_out
                   for layer in self.layers)


def _chain(prefix: str, fan_in: int, widths) -> tuple[tuple[Dense, ...], int]:
    layers = []
    for i, width in enumerate(widths, start=1):
        layers.append(Dense(f"{prefix}.h{i}", fan_in, int(width)))
        fan_in = int(width)
    return tuple(layers), fan_in


def layout(cfg: VAEConfig) -> Layout:
    """The layers of the VAE that ``cfg`` describes."""
    D, J = int(cfg.n_input), int(cfg.n_latent)
    enc, h = _chain("enc", D, cfg.hidden)
    dec, g = _chain("dec", J, cfg.dec_hidden)
    logvar = Bias if cfg.decoder_variance == "shared" else Dense
    heads = ((Dense("dec.out", g, D),) if cfg.decoder == "bernoulli"
             else (Dense("dec.mu", g, D), logvar("dec.logvar", g, D)))
    return Layout(enc, (Dense("enc.mu", h, J), Dense("enc.logvar", h, J)), dec, heads,
                  cfg.activation, cfg.decoder, cfg.log_var_floor)
