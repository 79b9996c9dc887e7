"""A run directory, opened: its config, checkpoint, history and data, for every command alike.

    runs/<name>/config.json      model and training configuration
                history.csv/json one row per epoch: train and test -ELBO, recon, KL, beta, seconds
                checkpoint.npz   parameters, Adam state, RNG state, position in the run
                results.json     final test evaluation (ELBO, importance-weighted bound)
                figures/*.png    every figure of numpyvae.plots

``open_run`` is what ``numpyvae plot``, ``numpyvae evaluate``, ``numpyvae train --resume`` and
the demo use to read a run; ``numpyvae.training.Trainer`` is what writes one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import data as datasets
from .config import TrainConfig
from .model import VAE, load_checkpoint

CHECKPOINT = "checkpoint.npz"


@dataclasses.dataclass
class Run:
    """An opened run: the model as checkpointed and how it was (and is to be) trained."""

    path: Path  # the checkpoint file
    vae: VAE
    train_config: TrainConfig
    epoch: int  # epochs finished
    step: int  # steps finished in the current epoch (mid-epoch checkpoint)
    history: dict[str, list]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def figures(self, out_dir=None) -> dict:
        """(Re)draw every figure of the run into ``out_dir`` (default: the run's figures/)."""
        d = self.data()
        return write_figures(self.vae, self.train_config, d.ds, d.test_labels, self.history,
                             out_dir or self.directory / "figures")

    def data(self, test_size: int | None = None) -> RunData:
        """The run's data set, prepared as in training (``test_size`` overrides the config's)."""
        cfg = self.train_config
        if test_size is not None:
            cfg = dataclasses.replace(cfg, test_size=test_size)
        return RunData.prepare(cfg, self.vae.config.decoder)


@dataclasses.dataclass
class RunData:
    """The data of a run: the data set and its training and test arrays as the run uses them."""

    ds: datasets.Dataset
    train_x: np.ndarray  # uint8, binarised once if static
    test_x: np.ndarray  # floats: a fixed seeded binarisation, or grey values
    test_labels: np.ndarray | None
    mode: str  # the binarisation used
    dequantize: bool = False  # x = (pixel + u) / 256: training draws u per batch, test once

    @classmethod
    def prepare(cls, cfg: TrainConfig, decoder: str) -> RunData:
        ds = load_training_data(cfg)
        return cls(ds, *prepare_data(ds, cfg, decoder))


def open_run(path) -> Run:
    """Open a run directory (or a checkpoint .npz) made by ``numpyvae train`` or the demo."""
    path = Path(path)
    ck = path / CHECKPOINT if path.is_dir() else path
    if not ck.exists():
        raise FileNotFoundError(f"no run at {path}: expected {ck}; give a run directory made "
                                "by 'numpyvae train' (or 'numpyvae demo') or a checkpoint .npz")
    vae, state = load_checkpoint(ck)
    cfg = TrainConfig.from_dict(state.get("train_config", {}))
    return Run(ck, vae, cfg, int(state.get("epoch", 0)), int(state.get("step", 0)),
               state.get("history", {}))


def load_training_data(cfg: TrainConfig) -> datasets.Dataset:
    """The configured data set (Fashion-MNIST is downloaded only if ``cfg.download``)."""
    kwargs = {"download": True} if cfg.download and cfg.dataset == "fashion-mnist" else {}
    if cfg.dataset == "frey":
        kwargs["split"] = cfg.split
    return datasets.load_dataset(cfg.dataset, **kwargs)


def prepare_data(ds: datasets.Dataset, cfg: TrainConfig, decoder: str):
    """Training images (uint8, binarised once if static), test floats, the binarisation used
    and whether the pixels are dequantised (the test set once, with u from seed + 1)."""
    mode = cfg.binarize or ("dynamic" if decoder == "bernoulli" else "none")
    if decoder == "gaussian" and mode != "none":
        raise ValueError(f"binarization {mode!r} with a Gaussian decoder: real-valued data "
                         "needs --binarize none")
    dequantize = decoder == "gaussian" if cfg.dequantize is None else cfg.dequantize
    if dequantize and decoder != "gaussian":
        raise ValueError("dequantize with a Bernoulli decoder: dequantised pixels are real "
                         "values in [0, 1), not 0/1 targets; use --decoder gaussian, or drop "
                         "--dequantize (binarisation is the Bernoulli decoder's discretisation)")
    train = ds.train_images[: cfg.train_size]
    test = ds.test_images[: cfg.test_size]
    test_labels = None if ds.test_labels is None else ds.test_labels[: cfg.test_size]
    if mode == "static":
        train = datasets.binarize_static(train, cfg.seed)
    # the test set of a binarised model is one fixed, seeded draw, the same for every epoch
    if dequantize:  # one fixed draw of u for the test set, the same every epoch and evaluation
        test_x = datasets.dequantize_static(test, cfg.seed + 1)
    else:
        test_x = (datasets.to_float(test) if mode == "none"
                  else datasets.binarize_static(test, cfg.seed + 1).astype(np.float32))
    return train, test_x, test_labels, mode, dequantize


def write_figures(vae: VAE, cfg: TrainConfig, ds: datasets.Dataset, test_labels, history: dict,
                  out_dir) -> dict:
    """Every figure of ``numpyvae.plots`` for a model trained on ``ds``, drawn from the grey
    test images (the same ones, and the same seed, whether training or redrawing later)."""
    from .plots import all_figures

    grey = datasets.to_float(ds.test_images[: cfg.test_size], vae.dtype)
    return all_figures(vae, grey, test_labels, ds.image_shape, history=history or None,
                       class_names=ds.class_names, rng=np.random.default_rng([cfg.seed, 2]),
                       out_dir=Path(out_dir))
