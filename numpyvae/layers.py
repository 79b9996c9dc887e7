"""One description of the VAE's layers, made once from the config and read by everyone.

    x --enc_hidden[0..]--> h --enc_heads: mu, logvar--> z = mu + exp(logvar/2) * eps
    z --dec_hidden[0..]--> h --dec_heads: out (Bernoulli logits) | mu, logvar (Gaussian)

The parameters (``numpyvae.params``), both engines and the checkpoint reader take the layer
list from ``Layout``; nobody recovers the structure by parsing names. Parameter names are
``"<layer>.W"`` (fan_in, fan_out) and ``"<layer>.b"`` (fan_out,), in forward order.
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
class Layout:
    """The layers of one VAE, grouped by role, in forward order."""

    enc_hidden: tuple[Dense, ...]  # activation after each
    enc_heads: tuple[Dense, Dense]  # mu, logvar (linear)
    dec_hidden: tuple[Dense, ...]  # activation after each
    dec_heads: tuple[Dense, ...]  # (out,) Bernoulli logits | (mu, logvar) Gaussian (linear)
    activation: str  # of every hidden layer, one of config.ACTIVATIONS
    decoder: str  # one of config.DECODERS

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
            shapes[layer.W] = (layer.fan_in, layer.fan_out)
            shapes[layer.b] = (layer.fan_out,)
        return shapes

    @property
    def size(self) -> int:
        """Number of scalars in all parameters."""
        return sum(layer.fan_in * layer.fan_out + layer.fan_out for layer in self.layers)


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
    heads = ((Dense("dec.out", g, D),) if cfg.decoder == "bernoulli"
             else (Dense("dec.mu", g, D), Dense("dec.logvar", g, D)))
    return Layout(enc, (Dense("enc.mu", h, J), Dense("enc.logvar", h, J)), dec, heads,
                  cfg.activation, cfg.decoder)
