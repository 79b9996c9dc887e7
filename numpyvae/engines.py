"""The one place where a backend name becomes an engine and its optimiser.

An engine computes the model's maths; both implement the same methods:

    forward_backward(x, eps, beta) -> (loss, recon, kl)   batch means; gradients into grads
                                                           (eps (k, B, J): k samples, the
                                                           engine's ``objective``)
    elbo_terms(x, eps)             -> (recon, kl)          per example, forward only
    decoder_nll(x, z)              -> -log p(x|z)          per row: the decoder alone (L_k)
    encode(x)                      -> (mu, logvar)
    decode(z)                      -> (logits,) | (mean, logvar)

and name the Adam that goes with them (``Engine.Adam``). ``numpyvae.model.VAE`` calls
``build`` once, at construction; nothing else in the package asks which backend is in use.
"""

from __future__ import annotations

from .config import BACKENDS, VAEConfig, check_choice
from .layers import Layout
from .optim import SGD


def engine_class(backend: str):
    """The engine class of ``backend`` ("numpy": ``network.ReferenceEngine``, "numba":
    ``fast.FastEngine``, imported only when asked for, so the numpy backend never loads Numba)."""
    check_choice("backend", backend, BACKENDS)
    if backend == "numba":
        from .fast import FastEngine

        return FastEngine
    from .network import ReferenceEngine

    return ReferenceEngine


def build(cfg: VAEConfig, layout: Layout, params, grads, *, ops=None, backward=None,
          adam=None):
    """(engine, optimiser) for ``cfg``, reading and writing ``params`` and ``grads``.

    ``ops``/``backward``/``adam`` substitute a student's functions into the reference engine
    (``numpyvae.exercises``): a module with ``numpyvae.ops``'s names, a function with
    ``network.backward``'s signature, a class with ``optim.Adam``'s constructor and ``step``.
    """
    custom = ops is not None or backward is not None
    if custom and cfg.backend != "numpy":
        raise ValueError(f"substituted ops or backward need backend='numpy' (the reference "
                         f"engine), got backend={cfg.backend!r}")
    cls = engine_class(cfg.backend)
    if custom:
        from . import ops as reference_ops

        engine = cls(layout, params, grads, ops=ops or reference_ops, backward=backward,
                     objective=cfg.objective)
    else:
        engine = cls(layout, params, grads, objective=cfg.objective)
    if cfg.optimizer == "sgd":
        return engine, SGD(lr=cfg.learning_rate)
    optimizer = (adam or cls.Adam)(params.size, params.dtype, lr=cfg.learning_rate,
                                   beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.adam_eps)
    if hasattr(engine, "weight_blocks") and hasattr(optimizer, "split_rows"):
        optimizer.split_rows(engine.weight_blocks())  # threads update what they wrote
    return engine, optimizer
