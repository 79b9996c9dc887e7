"""Your own VAE trains: the reference model with the student's functions substituted.

``VAE.from_config(cfg, ops=, backward=, adam=)`` builds the reference engine from the
student's ``vae_ops`` module, ``vae_network.backward`` and ``vae_optim.Adam``; the weights are
drawn with the student's ``xavier_uniform``. The reference is built the same way from
``numpyvae``'s own, with the same seed, and both see the same batches and the same noise, so a
student whose every row is exact gets the reference's losses to the last digit (float64).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import network, ops, optim
from ..batches import iterate_batches
from ..config import VAEConfig
from ..data import load_mnist
from ..model import VAE

NEEDED = ("DENSE-1", "DENSE-2", "DENSE-3", "DENSE-4", "ACT-1", "ACT-2", "ACT-3", "INIT-1",
          "BER-2", "BER-3", "REP-1", "REP-2", "REP-3", "KL-1", "KL-2", "KL-3", "ADAM-1",
          "ADAM-2", "ADAM-3", "ADAM-4", "ELBO-3")
"""The equations a softplus VAE with a Bernoulli decoder, trained with Adam, runs through."""


@dataclasses.dataclass
class TrainingRun:
    config: VAEConfig
    n_images: int
    epochs: list[tuple[float, float]]  # (yours, reference) mean -ELBO per epoch
    failure: str = ""

    def table(self) -> str:
        c = self.config
        lines = [f"Your VAE trains: {c.n_input}-{'-'.join(map(str, c.hidden))}-{c.n_latent} "
                 f"{c.activation}, {c.decoder} decoder, Adam {c.learning_rate:g}, "
                 f"{self.n_images} MNIST images, batch 100, seed {c.seed}, float64",
                 f"{'epoch':>5}  {'your -ELBO':>12}  {'reference':>12}"]
        lines += [f"{k:>5}  {y:>12.4f}  {r:>12.4f}" for k, (y, r) in enumerate(self.epochs, 1)]
        if self.failure:
            lines.append(self.failure)
        elif self.epochs:
            gap = max(abs(y - r) for y, r in self.epochs)
            lines.append("identical to the reference, to the last digit" if gap == 0 else
                         f"largest difference from the reference: {gap:.2e} nats")
        return "\n".join(lines)


def missing(results) -> list[str]:
    """The needed labels whose rows do not pass yet."""
    passed = {lab for r in results if r.passed for lab in r.label.split(", ")}
    failed = {lab for r in results if not r.passed for lab in r.label.split(", ")}
    return [lab for lab in NEEDED if lab in failed or lab not in passed]


def _model(cfg: VAEConfig, ops_module, backward, adam) -> VAE:
    vae = VAE.from_config(cfg, ops=ops_module, backward=backward, adam=adam)
    rng = np.random.default_rng(cfg.seed)  # redraw the weights with this side's Xavier
    for layer in vae.layout.layers:
        vae.params[layer.W][...] = ops_module.xavier_uniform(layer.fan_in, layer.fan_out, rng,
                                                            dtype=np.float64)
    return vae


def train_yours(modules: dict, n_images: int = 2000, epochs: int = 3, seed: int = 0,
                hidden: tuple[int, ...] = (128,), n_latent: int = 10) -> TrainingRun:
    """Train the student's VAE and the reference side by side on the first MNIST images."""
    cfg = VAEConfig(hidden=hidden, n_latent=n_latent, dtype="float64", backend="numpy",
                    seed=seed)
    run = TrainingRun(cfg, n_images, [])
    try:
        yours = _model(cfg, modules["vae_ops"], modules["vae_network"].backward,
                       modules["vae_optim"].Adam)
    except Exception as err:  # the student's init or constructor
        run.failure = f"your VAE could not be built: {type(err).__name__}: {err}"
        return run
    reference = _model(cfg, ops, network.backward, optim.Adam)
    images = load_mnist("train")[0][:n_images]
    data_rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        sums = np.zeros(2)
        count = 0
        for x in iterate_batches(images, 100, rng=data_rng, binarize="dynamic",
                                 dtype=np.float64):
            try:
                with np.errstate(all="ignore"):
                    mine = yours.partial_fit(x)
            except Exception as err:
                run.failure = (f"your VAE raised {type(err).__name__} in epoch {epoch}: {err}")
                return run
            sums += (mine, reference.partial_fit(x))
            count += 1
            if not np.isfinite(mine):
                run.epochs.append(tuple(sums / count))
                run.failure = f"your VAE's loss is {mine} in epoch {epoch}, batch {count}"
                return run
        run.epochs.append(tuple(sums / count))
    return run
