"""The VAE estimator: Metzen's 2015 interface (partial_fit, transform, generate, reconstruct).

Loss convention, stated once for the whole package: every loss is the negative ELBO in nats,
summed over pixels (reconstruction) and latent units (KL), averaged over examples.
``score`` returns the ELBO itself (higher is better), in the same units.

Unlike the seed, nothing here is tied to a batch size: the noise eps is drawn with the shape
of the batch it is used for.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections import OrderedDict

import numpy as np

from . import network, ops
from .optim import make_optimizer
from .params import Parameters

ACTIVATION_NAMES = ("softplus", "relu", "tanh")
DECODERS = ("bernoulli", "gaussian")
DTYPES = ("float32", "float64")
BACKENDS = ("numpy", "numba")
BACKEND_ENV = "NUMPYVAE_BACKEND"


def default_backend() -> str:
    """"numba" (the fused kernels), unless $NUMPYVAE_BACKEND names another backend."""
    backend = os.environ.get(BACKEND_ENV, "numba")
    if backend not in BACKENDS:
        raise ValueError(f"${BACKEND_ENV}={backend!r}; expected one of {list(BACKENDS)}")
    return backend


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a model and its optimiser; stored in every checkpoint."""

    n_input: int = 784
    hidden: tuple[int, ...] = (500, 500)
    n_latent: int = 20
    activation: str = "softplus"
    decoder: str = "bernoulli"
    dtype: str = "float32"
    seed: int = 0
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    decoder_hidden: tuple[int, ...] | None = None
    init: str = "xavier"
    backend: str = dataclasses.field(default_factory=default_backend)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.decoder_hidden is not None:
            object.__setattr__(self, "decoder_hidden", tuple(int(h) for h in self.decoder_hidden))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        for name in ("n_input", "n_latent"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive width, got {getattr(self, name)!r}")
        for side, widths in (("hidden", self.hidden), ("decoder_hidden", self.decoder_hidden)):
            if widths is not None and any(w < 1 for w in widths):
                raise ValueError(
                    f"{side}={widths}: every layer needs at least one unit; drop the layer or "
                    "give it a positive width"
                )
        _check_choice("activation", self.activation, ACTIVATION_NAMES)
        _check_choice("decoder", self.decoder, DECODERS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        _check_choice("init", self.init, tuple(ops.INITS))
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"learning_rate must be positive, got {self.learning_rate!r}; the seed uses 1e-3"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        for key in ("hidden", "decoder_hidden"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}")


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
    def from_config(cls, cfg: VAEConfig) -> VAE:
        vae = cls.__new__(cls)
        vae._build(cfg)
        return vae

    def _build(self, cfg: VAEConfig) -> None:
        self.config = cfg
        self.dtype = np.dtype(cfg.dtype)
        self.rng = np.random.default_rng(cfg.seed)
        shapes = network.layer_shapes(
            cfg.n_input, cfg.hidden, cfg.n_latent, cfg.decoder, cfg.decoder_hidden
        )
        self.params = Parameters(shapes, self.dtype)
        self.grads = self.params.zeros_like()
        for name, view in self.params.items():
            if name.endswith(".W"):  # biases stay zero
                view[...] = ops.INITS[cfg.init](*view.shape, rng=self.rng, dtype=self.dtype)
        opt_kwargs = {} if cfg.optimizer == "sgd" else {
            "beta1": cfg.beta1, "beta2": cfg.beta2, "eps": cfg.adam_eps}
        self.optimizer = make_optimizer(
            cfg.optimizer, self.params.size, self.dtype, cfg.learning_rate,
            backend=cfg.backend, **opt_kwargs
        )
        self._eps_buffers: dict[int, np.ndarray] = {}
        self.engine = None  # the fused path is built on first use (see numpyvae.fast)

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
    def _check_x(self, X, what: str = "X") -> np.ndarray:
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

    # ------------------------------------------------------------------ training
    def loss_and_gradients(self, X, eps, beta: float = 1.0):
        """Mean negative ELBO per example and name -> gradient, with the noise eps given.

        With eps fixed the loss is a deterministic function of the parameters: this is what
        ``numpyvae.gradcheck`` differentiates numerically. X (B, D), eps (B, J).
        """
        X = self._check_x(X)
        eps = np.asarray(eps, dtype=self.dtype)
        if eps.shape != (X.shape[0], self.n_latent):
            raise ValueError(f"eps has shape {eps.shape}; expected {(X.shape[0], self.n_latent)}")
        loss, _, _ = self._forward_backward(X, eps, beta)
        return loss, OrderedDict((name, g.copy()) for name, g in self.grads.items())

    def _engine(self):
        """The fused twin of ``network`` (backend "numba"), built on first use."""
        if self.engine is None:
            from .fast import FastEngine

            self.engine = FastEngine(self.config, self.params, self.grads)
        return self.engine

    def _forward_backward(self, X, eps, beta):
        if self.config.backend == "numba":
            return self._engine().forward_backward(X, eps, beta)
        return network.forward_backward(
            self.params, self.grads, X, eps, self.config.activation, self.config.decoder, beta
        )

    def step(self, X: np.ndarray, beta: float = 1.0, eps: np.ndarray | None = None):
        """One optimiser step on a checked batch; returns (loss, recon, kl) batch means."""
        if eps is None:
            eps = self._noise(X.shape[0])
        loss, recon, kl = self._forward_backward(X, eps, beta)
        self.optimizer.step(self.params.flat, self.grads.flat)
        return loss, recon, kl

    def _noise(self, batch_size: int) -> np.ndarray:
        """eps ~ N(0, I) of shape (batch_size, J), drawn into a buffer kept per batch size."""
        buf = self._eps_buffers.get(batch_size)
        if buf is None:
            buf = self._eps_buffers[batch_size] = np.empty((batch_size, self.n_latent), self.dtype)
        return self.rng.standard_normal(out=buf, dtype=self.dtype)

    def partial_fit(self, X, beta: float = 1.0) -> float:
        """One optimiser step on the batch X (any number of rows); returns its mean -ELBO."""
        return self.step(self._check_x(X), beta)[0]

    def fit(self, X, epochs: int = 1, batch_size: int = 100, beta: float = 1.0) -> VAE:
        """Train on X (N, D) for some epochs, reshuffled each epoch with the model's rng.

        ``self.history_`` holds the mean training loss per epoch. For data sets, binarisation,
        checkpoints and progress bars, use ``numpyvae.train`` (in ``numpyvae.training``).
        """
        X = self._check_x(X)
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
        X = self._check_x(X)
        mu, logvar, _ = network.encode(self.params, X, self.config.activation)
        return mu, logvar

    def transform(self, X) -> np.ndarray:
        """X (N, D) -> mu (N, J), the mean of q(z|x)."""
        X = self._check_x(X)
        return self._batched(lambda x: network.encode(self.params, x, self.config.activation)[0], X)

    def decode(self, z) -> tuple[np.ndarray, ...]:
        """z (N, J) -> the decoder's outputs: (logits,) or (mean, logvar)."""
        return network.decode(self.params, self._check_z(z), self.config.activation,
                              self.config.decoder)[0]

    def generate(self, z=None, n: int = 1) -> np.ndarray:
        """Decoder mean for z (N, J); with z=None, for n draws z ~ N(0, I) from the model's rng."""
        if z is None:
            if n < 1:
                raise ValueError(f"n must be >= 1, got {n}")
            z = self.rng.standard_normal((n, self.n_latent), dtype=self.dtype)
        return network.decoder_mean(self.decode(z), self.config.decoder)

    def reconstruct(self, X, sample: bool = False) -> np.ndarray:
        """Decoder mean of x -> z -> x'. z is the posterior mean, or a draw if ``sample``."""
        mu, logvar = self.encode(X)
        if sample:
            eps = self.rng.standard_normal(mu.shape, dtype=self.dtype)
            mu = ops.reparameterize_forward(mu, logvar, eps)[0]
        return self.generate(mu)

    def elbo_terms(self, X, eps=None) -> tuple[np.ndarray, np.ndarray]:
        """Per-example (reconstruction NLL, KL) in nats, one z-sample each, shapes (N,)."""
        X = self._check_x(X)
        if eps is None:
            eps = self.rng.standard_normal((len(X), self.n_latent), dtype=self.dtype)
        if self.config.backend == "numba":
            return self._engine().elbo_terms(X, eps)
        mu, logvar, _ = network.encode(self.params, X, self.config.activation)
        z = ops.reparameterize_forward(mu, logvar, eps)[0]
        outputs, _ = network.decode(self.params, z, self.config.activation, self.config.decoder)
        recon = network.reconstruction_nll(X, outputs, self.config.decoder)[0]
        kl = ops.kl_standard_normal_forward(mu, logvar)[0]
        return recon, kl

    def score(self, X, n_samples: int = 1, batch_size: int = 1000) -> float:
        """Mean ELBO per example in nats (higher is better), averaged over n_samples z-draws."""
        from .evaluate import elbo_terms

        recon, kl = elbo_terms(self, X, self.rng, n_samples, batch_size)
        return -float(np.mean(recon + kl))  # (ELBO-1): ELBO = E_q[log p(x|z)] - KL

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Save parameters, optimiser and RNG state and config to ``path`` (.npz, atomic)."""
        from .checkpoint import save_checkpoint

        save_checkpoint(path, self)

    @classmethod
    def load(cls, path) -> VAE:
        """Load a model saved with ``save`` (or a training checkpoint); never unpickles."""
        from .checkpoint import load_checkpoint

        return load_checkpoint(path)[0]

    def __getstate__(self) -> dict:
        """For pickle and copy.deepcopy: the fused engine holds views of this model's buffers
        and is rebuilt on first use by the copy, against the copy's buffers."""
        state = self.__dict__.copy()
        state["engine"] = None
        state["_eps_buffers"] = {}
        return state

    def __repr__(self) -> str:
        c = self.config
        return (f"VAE(n_input={c.n_input}, hidden={c.hidden}, n_latent={c.n_latent}, "
                f"activation={c.activation!r}, decoder={c.decoder!r}, dtype={c.dtype!r})")
