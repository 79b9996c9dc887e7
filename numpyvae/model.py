"""The VAE estimator: Metzen's 2015 interface (partial_fit, transform, generate, reconstruct).

Loss convention, stated once for the whole package: every loss is the negative ELBO in nats,
summed over pixels (reconstruction) and latent units (KL), averaged over examples.
``score`` returns the ELBO itself (higher is better), in the same units.

Unlike the seed, nothing here is tied to a batch size: the noise eps is drawn with the shape
of the batch it is used for.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import numpy as np

from . import engines
from .checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from .config import VAEConfig
from .errors import CheckpointError
from .layers import layout as make_layout
from .network import decoder_mean
from .ops import INITS, reparameterize_forward
from .params import Parameters

__all__ = ["VAE", "VAEConfig", "save_checkpoint", "load_checkpoint"]


class VAE:
    """A Variational Autoencoder with a Gaussian encoder and a Bernoulli or Gaussian decoder.

    >>> vae = VAE(n_input=784, hidden=(500, 500), n_latent=20)   # the seed's model
    >>> loss = vae.partial_fit(X_batch)     # one Adam step, mean -ELBO per example (nats)
    >>> mu = vae.transform(X)               # x -> mu of q(z|x)
    >>> x_mean = vae.generate(n=16)         # z ~ N(0, I) -> mean of p(x|z)
    """

    def __init__(
        self,
        n_input: int = 784,
        hidden: tuple[int, ...] = (500, 500),
        n_latent: int = 20,
        activation: str = "softplus",
        decoder: str = "bernoulli",
        dtype: str = "float32",
        seed: int = 0,
        **options,
    ):
        if isinstance(n_input, VAEConfig):  # VAE(cfg): the same as VAE.from_config(cfg)
            given = dict(options, hidden=hidden, n_latent=n_latent, activation=activation,
                         decoder=decoder, dtype=dtype, seed=seed)
            defaults = {name: p.default for name, p in
                        inspect.signature(VAE.__init__).parameters.items()}
            extra = sorted(k for k, v in given.items() if k not in defaults or v != defaults[k])
            if extra:
                raise TypeError(f"VAE(config) takes no other arguments, got {extra}; use "
                                "dataclasses.replace(config, ...) to change a field")
            self._build(n_input)
            return
        cfg = VAEConfig(
            n_input=n_input, hidden=tuple(hidden), n_latent=n_latent, activation=activation,
            decoder=decoder, dtype=dtype, seed=seed, **options,
        )
        self._build(cfg)

    @classmethod
    def from_config(cls, cfg: VAEConfig, *, ops=None, backward=None, adam=None) -> VAE:
        """The model ``cfg`` describes, freshly initialised.

        For exercises, ``ops`` (a module with ``numpyvae.ops``'s names), ``backward`` (a function
        with ``network.backward``'s signature) and ``adam`` (a class with ``optim.Adam``'s
        constructor and ``step``) replace the reference's own; they need backend "numpy".
        """
        vae = cls.__new__(cls)
        vae._build(cfg, ops=ops, backward=backward, adam=adam)
        return vae

    def _build(self, cfg: VAEConfig, ops=None, backward=None, adam=None) -> None:
        self.config = cfg
        self.dtype = np.dtype(cfg.dtype)
        self.rng = np.random.default_rng(cfg.seed)
        self.layout = make_layout(cfg)
        self.params = Parameters(self.layout.shapes(), self.dtype,
                                 side_by_side=self.layout.side_by_side())
        self.grads = self.params.zeros_like()
        init = INITS[cfg.init]
        for layer in self.layout.layers:  # forward order; biases stay zero
            if layer.W is None:  # a Bias layer (the shared log-variance) has no weight
                continue
            self.params[layer.W][...] = init(layer.fan_in, layer.fan_out, rng=self.rng,
                                             dtype=self.dtype)
        self._engine, self.optimizer = engines.build(cfg, self.layout, self.params, self.grads,
                                                     ops=ops, backward=backward, adam=adam)
        self._eps_buffers: dict[int, np.ndarray] = {}

    @property
    def engine(self):
        """The engine computing this model's maths (``network.ReferenceEngine`` for backend
        "numpy", ``fast.FastEngine`` for "numba"), chosen once, at construction."""
        return self._engine

    # ------------------------------------------------------------------ properties
    @property
    def n_input(self) -> int:
        return self.config.n_input

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    def parameters(self) -> OrderedDict[str, np.ndarray]:
        """Name -> writable view of every weight and bias, in forward order."""
        return OrderedDict(self.params.items())

    # ------------------------------------------------------------------ input checks
    def check_input(self, X, what: str = "X") -> np.ndarray:
        """X as a 2-D array of the model's dtype, or a ValueError saying what is wrong."""
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_input:
            raise ValueError(
                f"{what} has shape {X.shape}; expected (n_examples, {self.n_input}): one "
                f"flattened image of {self.n_input} pixels per row (try X.reshape(len(X), -1))"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{what} has no rows; expected at least one example")
        if X.dtype == np.uint8:
            raise ValueError(
                f"{what} is uint8 (0..255); convert to floats in [0, 1] first, e.g. X / 255"
            )
        X = X.astype(self.dtype, copy=False)
        lo, hi = X.min(), X.max()  # NaN propagates into min/max; no temporary array
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{what} contains NaN or inf; clean or drop those rows first")
        if self.config.decoder == "bernoulli" and (lo < 0 or hi > 1):
            raise ValueError(
                f"{what} has values in [{lo:g}, {hi:g}]; the Bernoulli decoder needs pixels in "
                "[0, 1] (divide 8-bit images by 255), or use decoder='gaussian' for real values"
            )
        return X

    def _check_z(self, z) -> np.ndarray:
        z = np.asarray(z, dtype=self.dtype)
        if z.ndim == 1:
            z = z[None, :]
        if z.ndim != 2 or z.shape[1] != self.n_latent:
            raise ValueError(f"z has shape {z.shape}; expected (n, {self.n_latent})")
        if not np.isfinite(z).all():
            raise ValueError("z contains NaN or inf")
        return z

    def _eps_shape(self, n: int) -> tuple[int, ...]:
        """The noise one training step takes for n examples: (n, J) for the seed's ELBO, (k, n,
        J) when each example gets k samples (objective "iwae", or "elbo" with k > 1)."""
        c = self.config
        return (n, c.n_latent) if c.objective == "elbo" and c.k == 1 else (c.k, n, c.n_latent)

    def _check_eps(self, eps, n: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
        eps = np.asarray(eps, dtype=self.dtype)
        shape = (n, self.n_latent) if shape is None else shape
        if eps.shape != shape:
            c = self.config
            what = (f"one row of {self.n_latent} standard normal draws per example"
                    if len(shape) == 2 else
                    f"k={c.k} samples (objective={c.objective!r}, k={c.k}): eps[i] is the i-th "
                    "sample's noise for every example")
            raise ValueError(f"eps has shape {eps.shape}; expected {shape}: {what}")
        return eps

    def _check_beta(self, beta: float) -> None:
        if self.config.objective == "iwae" and beta != 1.0:
            raise ValueError(f"beta={beta}: the IWAE bound L_k has no separate KL term to weight; "
                             "train it with beta=1 (and no KL warm-up), or use objective='elbo'")

    # ------------------------------------------------------------------ training
    def loss_and_gradients(self, X, eps, beta: float = 1.0):
        """Mean loss per example and name -> gradient, with the noise eps given.

        The loss is the negative ELBO (objective "elbo", eps (B, J); with k > 1 samples, eps
        (k, B, J) and the ELBO averaged over them) or -L_k (objective "iwae", eps (k, B, J)).
        With eps fixed the loss is a deterministic function of the parameters: this is what
        ``numpyvae.gradcheck`` differentiates numerically. X (B, D).
        """
        X = self.check_input(X)
        eps = self._check_eps(eps, X.shape[0], self._eps_shape(X.shape[0]))
        self._check_beta(beta)
        loss, _, _ = self._engine.forward_backward(X, eps, beta)
        return loss, OrderedDict((name, g.copy()) for name, g in self.grads.items())

    def step(self, X: np.ndarray, beta: float = 1.0, eps: np.ndarray | None = None):
        """One optimiser step on a checked batch; returns (loss, recon, kl) batch means."""
        self._check_beta(beta)
        if eps is None:
            eps = self._noise(X.shape[0])
        loss, recon, kl = self._engine.forward_backward(X, eps, beta)
        self.optimizer.step(self.params.flat, self.grads.flat)
        return loss, recon, kl

    def _noise(self, batch_size: int) -> np.ndarray:
        """eps ~ N(0, I) of the step's shape (``_eps_shape``), drawn into a buffer kept per
        batch size."""
        buf = self._eps_buffers.get(batch_size)
        if buf is None:
            buf = self._eps_buffers[batch_size] = np.empty(self._eps_shape(batch_size), self.dtype)
        return self.rng.standard_normal(out=buf, dtype=self.dtype)

    def partial_fit(self, X, beta: float = 1.0) -> float:
        """One optimiser step on the batch X (any number of rows); returns its mean -ELBO."""
        return self.step(self.check_input(X), beta)[0]

    def fit(self, X, epochs: int = 1, batch_size: int = 100, beta: float = 1.0) -> VAE:
        """Train on X (N, D) for some epochs, reshuffled each epoch with the model's rng.

        ``self.history_`` holds the mean training loss per epoch. For data sets, binarisation,
        checkpoints and progress bars, use ``numpyvae.train`` (in ``numpyvae.training``).
        """
        X = self.check_input(X)
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
        self.history_ = []
        for _ in range(epochs):
            order = self.rng.permutation(len(X))
            total = 0.0
            for start in range(0, len(X), batch_size):
                batch = X[order[start : start + batch_size]]
                total += self.step(batch, beta)[0] * len(batch)
            self.history_.append(total / len(X))
        return self

    # ------------------------------------------------------------------ inference
    def _batched(self, fn, X, batch_size: int = 1000) -> np.ndarray:
        return np.concatenate([fn(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])

    def encode(self, X) -> tuple[np.ndarray, np.ndarray]:
        """X (N, D) -> (mu, logvar), each (N, J): the parameters of q(z|x)."""
        return self._engine.encode(self.check_input(X))

    def transform(self, X) -> np.ndarray:
        """X (N, D) -> mu (N, J), the mean of q(z|x)."""
        return self._batched(lambda x: self._engine.encode(x)[0], self.check_input(X))

    def decode(self, z) -> tuple[np.ndarray, ...]:
        """z (N, J) -> the decoder's outputs: (logits,) or (mean, logvar)."""
        return self._engine.decode(self._check_z(z))

    def generate(self, z=None, n: int = 1) -> np.ndarray:
        """Decoder mean for z (N, J); with z=None, for n draws z ~ N(0, I) from the model's rng."""
        if z is None:
            if n < 1:
                raise ValueError(f"n must be >= 1, got {n}")
            z = self.rng.standard_normal((n, self.n_latent), dtype=self.dtype)
        return decoder_mean(self.decode(z), self.config.decoder)

    def reconstruct(self, X, sample: bool = False) -> np.ndarray:
        """Decoder mean of x -> z -> x'. z is the posterior mean, or a draw if ``sample``."""
        mu, logvar = self.encode(X)
        if sample:
            eps = self.rng.standard_normal(mu.shape, dtype=self.dtype)
            mu = reparameterize_forward(mu, logvar, eps)[0]  # (REP-1)
        return self.generate(mu)

    def elbo_terms(self, X, eps=None, *, n_samples: int = 1, rng: np.random.Generator | None = None,
                   batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Per-example (reconstruction NLL, KL) in nats, shapes (N,), float64.

        With ``eps`` (N, J): that one z-sample per example. Without: the mean over ``n_samples``
        draws from ``rng`` (default: the model's generator; pass your own so that evaluating
        never changes what training does next). In blocks of ``batch_size`` examples.
        """
        X = self.check_input(X)
        if eps is not None:
            eps = self._check_eps(eps, len(X))
        elif n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        rng = self.rng if rng is None else rng
        recon, kl = np.zeros(len(X)), np.zeros(len(X))
        for start in range(0, len(X), batch_size):
            x = X[start : start + batch_size]
            rows = slice(start, start + len(x))
            if eps is not None:
                recon[rows], kl[rows] = self._engine.elbo_terms(x, eps[rows])
                continue
            for _ in range(n_samples):
                r, k = self._engine.elbo_terms(
                    x, rng.standard_normal((len(x), self.n_latent), dtype=self.dtype))
                recon[rows] += r / n_samples
                kl[rows] += k / n_samples
        return recon, kl

    def score(self, X, n_samples: int = 1, batch_size: int = 1000,
              rng: np.random.Generator | None = None) -> float:
        """Mean ELBO per example in nats (higher is better), averaged over n_samples z-draws."""
        recon, kl = self.elbo_terms(X, n_samples=n_samples, rng=rng, batch_size=batch_size)
        return -float(np.mean(recon + kl))  # (ELBO-1): ELBO = E_q[log p(x|z)] - KL

    # ------------------------------------------------------------------ persistence
    def save(self, path, train_state: dict | None = None, *, with_state: bool = True):
        """Save config and parameters to ``path`` (.npz, atomic), with the optimiser and RNG
        state (``with_state``, for resuming) and the training loop's ``train_state``."""
        opt = self.optimizer.state() if with_state else None
        if opt is not None and "m" in opt:  # files hold every buffer in canonical order
            opt = {**opt, "m": self.params.to_canonical(opt["m"]),
                   "v": self.params.to_canonical(opt["v"])}
        return write_checkpoint(
            path, self.config, self.params.to_canonical(self.params.flat), optimizer=opt,
            rng=self.rng.bit_generator.state if with_state else None, train_state=train_state)

    @classmethod
    def from_checkpoint(cls, ck: Checkpoint, source="checkpoint") -> VAE:
        """The model a verified ``Checkpoint`` holds (optimiser and RNG state where present)."""
        vae = cls.from_config(ck.config)
        vae.params.from_canonical(ck.params)  # files hold the canonical order
        if ck.optimizer is not None:
            opt = ck.optimizer
            if "m" in opt:
                opt = {**opt, "m": vae.params.from_canonical(opt["m"], np.empty_like(opt["m"])),
                       "v": vae.params.from_canonical(opt["v"], np.empty_like(opt["v"]))}
            vae.optimizer.load_state(opt)
        if ck.rng is not None:
            try:
                vae.rng.bit_generator.state = ck.rng
            except Exception as e:  # a foreign or damaged state dict
                raise CheckpointError(f"{source}: bad RNG state ({e})") from e
        return vae

    @classmethod
    def load(cls, path) -> VAE:
        """Load a model saved with ``save`` (or a training checkpoint); never unpickles."""
        return cls.from_checkpoint(read_checkpoint(path), source=path)

    def __getstate__(self) -> dict:
        """For pickle and copy.deepcopy: the engine holds views of this model's buffers, so the
        copy builds its own (the reference ops: substituted ones are not copied)."""
        state = self.__dict__.copy()
        del state["_engine"]
        state["_eps_buffers"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._engine = engines.engine_class(self.config.backend)(
            self.layout, self.params, self.grads, objective=self.config.objective)

    def __repr__(self) -> str:
        c = self.config
        objective = "" if (c.objective, c.k) == ("elbo", 1) else (
            f", objective={c.objective!r}, k={c.k}")
        return (f"VAE(n_input={c.n_input}, hidden={c.hidden}, n_latent={c.n_latent}, "
                f"activation={c.activation!r}, decoder={c.decoder!r}, dtype={c.dtype!r}"
                f"{objective})")


def save_checkpoint(path, vae: VAE, train_state: dict | None = None):
    """Write ``vae`` with its optimiser and RNG state (and ``train_state``) to ``path``."""
    return vae.save(path, train_state)


def load_checkpoint(path, expect_config: VAEConfig | None = None) -> tuple[VAE, dict]:
    """(vae, train_state) from ``path``; with ``expect_config``, the architecture must match."""
    ck = read_checkpoint(path)
    if expect_config is not None:
        diff = ck.config.architecture_diff(expect_config)
        if diff:
            got = {k: a for k, (a, _) in diff.items()}
            want = {k: b for k, (_, b) in diff.items()}
            raise CheckpointError(f"{path}: checkpoint is of another architecture: {got}, "
                                  f"expected {want}; use a matching --out directory")
    return VAE.from_checkpoint(ck, source=path), ck.train_state
