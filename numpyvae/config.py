"""What defines a run: ``VAEConfig`` (the model), ``TrainConfig`` (its training), and every list
of choices, defined once.

Every module that offers a choice (the command line, the model, the engines, the checkpoint
reader) imports its list from here, so adding an activation or a backend is one edit here and
one implementation in each engine. This module imports only NumPy.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

ACTIVATIONS = ("softplus", "relu", "tanh")  # hidden-layer activations both engines implement
DECODERS = ("bernoulli", "gaussian")
DTYPES = ("float32", "float64")
BACKENDS = ("numpy", "numba")  # numpy: the reference engine (network.py); numba: fast.py
OPTIMIZERS = ("adam", "sgd")
INITS = ("xavier", "he")
DATASETS = ("mnist", "fashion-mnist", "frey")
BINARIZATIONS = ("dynamic", "static", "none")
SCHEDULES = ("constant", "burda")  # learning rate per pass; numpyvae.schedules computes them
OUTPUT_BIASES = ("zero", "data-mean")  # the decoder's output bias at the start of training
OBJECTIVES = ("elbo", "iwae")  # elbo: the ELBO, averaged over k samples; iwae: Burda's L_k
# the Gaussian decoder's log-variance: a head on the last hidden layer (depends on z), or one
# learned value per pixel shared by every z (a bias-only parameter, "dec.logvar.b")
DECODER_VARIANCES = ("conditional", "shared")
# the default floor on the Gaussian decoder's variance, for 8-bit pixels scaled by 1/256: the
# variance of the dequantisation noise u/256, u ~ U(0, 1), i.e. of a pixel spread uniformly over
# its one grey level; a narrower Gaussian describes nothing 8-bit data can show (gaussian.md)
VAR_FLOOR_8BIT = 1.0 / (12 * 256**2)
FREY_SPLITS = ("blocks", "random")  # held-out contiguous blocks of frames (gaps dropped); or 0.1's
BACKEND_ENV = "NUMPYVAE_BACKEND"


def default_backend() -> str:
    """The default backend: "numba" (the fused kernels), unless $NUMPYVAE_BACKEND names another."""
    backend = os.environ.get(BACKEND_ENV, "numba")
    if backend not in BACKENDS:
        raise ValueError(f"${BACKEND_ENV}={backend!r}; expected one of {list(BACKENDS)}")
    return backend


def check_choice(name: str, value, choices) -> None:
    """Raise a ValueError naming the field, the value and the valid choices."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}")


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
    decoder_hidden: tuple[int, ...] | None = None  # None: the encoder's widths, reversed
    init: str = "xavier"
    objective: str = "elbo"  # what training maximises: "elbo" (ELBO-4) or "iwae" (IWAE-1)
    k: int = 1  # samples of z per example and step (the k of L_k, or of the averaged ELBO)
    backend: str = dataclasses.field(default_factory=default_backend)
    # Gaussian decoder only. The floor sigma^2_min of sigma^2 = sigma^2_min + exp(a)  (GAU-4):
    # "auto" is VAR_FLOOR_8BIT for a Gaussian decoder and None for a Bernoulli one; None is no
    # floor (logvar = a, the behaviour before the floor existed, and of files without the field)
    decoder_var_floor: float | str | None = "auto"
    decoder_variance: str = "conditional"  # one of DECODER_VARIANCES

    # what a stored config without a field meant: the behaviour before the field existed
    LEGACY = {"decoder_var_floor": None, "decoder_variance": "conditional"}

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
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("decoder", self.decoder, DECODERS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("backend", self.backend, BACKENDS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("init", self.init, INITS)
        check_choice("objective", self.objective, OBJECTIVES)
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k={self.k!r}: k is a number of samples of z per example, a whole "
                             "number >= 1 (k=1 with objective='elbo' is the seed's VAE)")
        object.__setattr__(self, "k", int(self.k))
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"learning_rate must be positive, got {self.learning_rate!r}; the seed uses 1e-3"
            )
        self._check_gaussian_options()

    def _check_gaussian_options(self) -> None:
        check_choice("decoder_variance", self.decoder_variance, DECODER_VARIANCES)
        floor = self.decoder_var_floor
        if floor == "auto":
            floor = VAR_FLOOR_8BIT if self.decoder == "gaussian" else None
            object.__setattr__(self, "decoder_var_floor", floor)
        if self.decoder == "bernoulli":
            if floor is not None:
                raise ValueError(
                    f"decoder_var_floor={floor!r} with a Bernoulli decoder: a variance floor "
                    "is an option of the Gaussian decoder; use decoder='gaussian' or leave the "
                    "floor out (None)")
            if self.decoder_variance != "conditional":
                raise ValueError(
                    f"decoder_variance={self.decoder_variance!r} with a Bernoulli decoder: a "
                    "Bernoulli decoder has no variance; use decoder='gaussian' or "
                    "decoder_variance='conditional'")
            return
        if floor is not None:
            if isinstance(floor, str) or not (math.isfinite(floor) and floor > 0):
                raise ValueError(
                    f"decoder_var_floor must be a positive variance or None (no floor), got "
                    f"{floor!r}; for 8-bit pixels / 256 use {VAR_FLOOR_8BIT:.4g} (the default)")
            object.__setattr__(self, "decoder_var_floor", float(floor))

    @property
    def dec_hidden(self) -> tuple[int, ...]:
        """The decoder's hidden widths (the encoder's reversed unless given)."""
        return tuple(reversed(self.hidden)) if self.decoder_hidden is None else self.decoder_hidden

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        d = {**cls.LEGACY, **d}
        for key in ("hidden", "decoder_hidden"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    ARCHITECTURE = ("n_input", "hidden", "n_latent", "activation", "decoder", "decoder_hidden",
                    "dtype", "decoder_var_floor", "decoder_variance")

    @property
    def log_var_floor(self) -> float | None:
        """log sigma^2_min, or None: the constant c of (GAU-4)."""
        return None if self.decoder_var_floor is None else math.log(self.decoder_var_floor)

    def architecture_diff(self, other: VAEConfig) -> dict[str, tuple]:
        """field -> (self's value, other's value) for every architecture field that differs."""
        return {k: (getattr(self, k), getattr(other, k)) for k in self.ARCHITECTURE
                if getattr(self, k) != getattr(other, k)}


@dataclasses.dataclass
class TrainConfig:
    """How to train. Defaults reproduce the seed: batch 100, 75 epochs, beta 1."""

    dataset: str = "mnist"
    epochs: int = 75
    batch_size: int = 100
    binarize: str | None = None  # None: "dynamic" for a Bernoulli decoder, "none" for Gaussian
    beta: float = 1.0  # KL weight (beta-VAE); 1 is the true ELBO
    warmup_epochs: float = 0.0  # beta ramps linearly from 0 over this many epochs
    seed: int = 0
    eval_samples: int = 1  # z-draws per test image for the per-epoch test -ELBO
    iw_samples: int = 0  # k of the final importance-weighted bound (0: skip)
    train_size: int | None = None  # use only the first N training images (quick runs)
    test_size: int | None = None
    figures: bool = True
    progress: bool = True
    download: bool = False  # Fashion-MNIST: fetch it into the cache if it is not on the machine
    schedule: str = "constant"  # learning rate per pass: "constant" or "burda" (numpyvae.schedules)
    output_bias: str = "zero"  # "data-mean": the decoder's output bias starts at the data's mean
    # Gaussian decoder: x = (pixel + u) / 256, u ~ U(0, 1) fresh for every batch (GAU-7), so the
    # ELBO bounds a discrete likelihood. None: on for a Gaussian decoder, off for a Bernoulli one
    dequantize: bool | None = None
    split: str = "blocks"  # Frey's held-out set: one of FREY_SPLITS (other data sets have theirs)

    # what a stored training config without a field meant: the behaviour before the field existed
    LEGACY = {"dequantize": False, "split": "random"}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A stored training config (a checkpoint's, a run's); missing fields mean ``LEGACY``."""
        return cls(**{**cls.LEGACY, **d})

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of "
                             f"{list(DATASETS)}")
        if self.binarize is not None and self.binarize not in BINARIZATIONS:
            raise ValueError(f"unknown binarization {self.binarize!r}; choose one of "
                             f"{list(BINARIZATIONS)}")
        for name in ("epochs", "batch_size", "eval_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        check_choice("split", self.split, FREY_SPLITS)
        if self.warmup_epochs < 0 or self.iw_samples < 0:
            raise ValueError("warmup_epochs and iw_samples must be >= 0")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("output_bias", self.output_bias, OUTPUT_BIASES)
