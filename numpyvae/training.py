"""The training loop: data set -> epochs of Adam steps -> history, checkpoints and figures.

A run lives in one directory (its layout: ``numpyvae.runs``).

Determinism: the data order and binarisation draws of epoch e come from a generator seeded by
(seed, e), the noise eps from the model's generator (checkpointed), and evaluation noise from
its own generator. So a resumed run, even one stopped mid-epoch, is bitwise the run that was
never stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import signal
import time
from pathlib import Path

import numpy as np

from . import data as datasets
from .atomic import atomic_write
from .config import TrainConfig, VAEConfig
from .errors import DivergenceError
from .evaluate import (
    active_units,
    bits_per_dim,
    discrete_nats,
    discrete_report,
    importance_weighted_bound,
)
from .model import VAE
from .runs import CHECKPOINT, RunData, open_run, write_figures
from .schedules import learning_rate

__all__ = ["Trainer", "TrainConfig", "TrainingInterrupted", "train", "CHECKPOINT"]


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived: the step finished, a checkpoint was written."""

    def __init__(self, signum: int, checkpoint: Path, epoch: int, step: int):
        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: stopped after step {step} (epoch {epoch + 1}); "
                         f"checkpoint saved to {checkpoint}")


class _StopOnSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (saves are atomic anyway)
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def default_run_dir(model_cfg: VAEConfig, train_cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{train_cfg.dataset}-z{model_cfg.n_latent}-{stamp}"


class Trainer:
    """Runs (or resumes) one training run in ``out_dir``; ``log`` receives one line per event."""

    def __init__(self, model_cfg: VAEConfig | None, train_cfg: TrainConfig | None, out_dir,
                 resume: bool = False, log=print, overwrite: bool = False, on_step=None,
                 on_epoch=None, expect: dict | None = None):
        """``expect`` (resume): model fields the checkpoint must have, e.g. {"objective":
        "iwae", "k": 5}; a run is never continued under another objective (nor, with
        ``model_cfg`` given, another architecture). ``overwrite``: start afresh even if
        ``out_dir`` holds a run (its files are replaced one by one, atomically, as the new run
        writes them). ``on_step(trainer, i)`` runs
        after step i of an epoch; ``on_epoch(trainer, row)`` after each epoch's row of the
        history has been written and checkpointed (``numpyvae.demo`` draws its frames there).
        """
        self.out = Path(out_dir)
        self.log = log
        self.on_step, self.on_epoch = on_step, on_epoch
        ck = self.out / CHECKPOINT
        if resume:
            if not ck.exists():
                raise FileNotFoundError(f"nothing to resume: {ck} does not exist; start a new run "
                                        "without --resume")
            run = open_run(ck)
            self._check_resume(ck, run.vae.config, model_cfg, expect or {})
            saved = run.train_config
            if train_cfg is not None:  # only the number of epochs may change on resume
                saved.epochs = train_cfg.epochs
            self.vae, self.cfg, self.epoch, self.step_in_epoch = run.vae, saved, run.epoch, run.step
            self.history = run.history
        else:
            if ck.exists() and not overwrite:
                raise FileExistsError(f"{ck} exists: continue it with --resume, or choose "
                                      "another --out directory")
            self.vae, self.cfg = VAE.from_config(model_cfg), train_cfg
            self.epoch, self.step_in_epoch, self.history = 0, 0, {}
        if self.vae.config.objective == "iwae" and (self.cfg.beta != 1 or
                                                   self.cfg.warmup_epochs > 0):
            raise ValueError(f"objective 'iwae' with beta={self.cfg.beta}, warm-up "
                             f"{self.cfg.warmup_epochs} epochs: the bound L_k has no separate KL "
                             "term to weight; drop --beta/--warmup, or use --objective elbo")
        data = RunData.prepare(self.cfg, self.vae.config.decoder)
        if data.ds.dim != self.vae.n_input:
            raise ValueError(f"{self.cfg.dataset} images have {data.ds.dim} pixels but the model "
                             f"expects n_input={self.vae.n_input}")
        self.ds, self.train_x, self.test_x = data.ds, data.train_x, data.test_x
        self.test_labels, self.mode = data.test_labels, data.mode
        self.dequantize = data.dequantize
        if not resume and self.cfg.output_bias == "data-mean":
            self._init_output_bias()
        self.out.mkdir(parents=True, exist_ok=True)
        self._batch = np.empty((min(self.cfg.batch_size, len(self.train_x)), self.ds.dim),
                               self.vae.dtype)

    @staticmethod
    def _check_resume(ck: Path, saved: VAEConfig, model_cfg: VAEConfig | None,
                      expect: dict) -> None:
        """Refuse to continue a run under another objective, k or architecture."""
        want = dict(expect)
        if model_cfg is not None:
            want.update(objective=model_cfg.objective, k=model_cfg.k)
            want.update({key: b for key, (_, b) in saved.architecture_diff(model_cfg).items()})
        diff = {key: (getattr(saved, key), v) for key, v in want.items()
                if getattr(saved, key) != v}
        if diff:
            had = ", ".join(f"{key}={a!r}" for key, (a, _) in diff.items())
            asked = ", ".join(f"{key}={b!r}" for key, (_, b) in diff.items())
            flags = " ".join(f"--{key} {a}" for key, (a, _) in diff.items()
                             if key in ("objective", "k"))
            raise ValueError(
                f"{ck} was trained with {had}; resuming it with {asked} would continue its "
                f"optimiser state on another model or objective. Fix: resume it as it was "
                f"({flags or 'without those flags'}), or start the new run in another --out "
                "directory")

    def _init_output_bias(self) -> None:
        """The decoder's output bias at the training data's mean (Burda et al.): the logit of
        each pixel's mean for a Bernoulli decoder, the mean itself for a Gaussian one."""
        mean = sum(x.sum(axis=0, dtype=np.float64) for x in self._train_floats())
        mean /= len(self.train_x)
        if self.vae.config.decoder == "bernoulli":
            p = np.clip(mean, 1e-3, 1 - 1e-3)  # pixels never on: a finite logit, sigma = 1e-3
            self.vae.params["dec.out.b"][...] = np.log(p) - np.log1p(-p)
        else:
            self.vae.params["dec.mu.b"][...] = mean

    def _train_floats(self, block: int = 1000):
        """The training images as the model's floats, a block at a time: grey values x/255
        (the mean of their dynamic binarisation), the 0/1 pixels of a static one, or (pixel +
        1/2)/256, the mean of a dequantised pixel."""
        for i in range(0, len(self.train_x), block):
            x = self.train_x[i : i + block]
            if self.dequantize:
                yield ((x.astype(np.float64) + 0.5) / 256).astype(self.vae.dtype)
            else:
                yield (x.astype(self.vae.dtype) if self.mode == "static"
                       else datasets.to_float(x, self.vae.dtype))

    # ------------------------------------------------------------------ bookkeeping
    def _state(self) -> dict:
        return {"epoch": self.epoch, "step": self.step_in_epoch, "history": self.history,
                "train_config": dataclasses.asdict(self.cfg)}

    def save(self) -> Path:
        return self.vae.save(self.out / CHECKPOINT, self._state())

    def _write_history(self) -> None:
        write_text_atomic(self.out / "history.json", json.dumps(self.history, indent=1))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.history.keys())
        writer.writerows(zip(*self.history.values(), strict=True))
        write_text_atomic(self.out / "history.csv", buf.getvalue())

    def beta_at(self, epoch: int, step: int, n_steps: int) -> float:
        """beta, ramped linearly from 0 over ``warmup_epochs`` (KL warm-up)."""
        if self.cfg.warmup_epochs <= 0:
            return self.cfg.beta
        progress = (epoch + step / n_steps) / self.cfg.warmup_epochs
        return self.cfg.beta * min(1.0, progress)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        cfg, vae = self.cfg, self.vae
        write_text_atomic(self.out / "config.json", json.dumps(
            {"model": vae.config.to_dict(), "train": dataclasses.asdict(cfg)}, indent=1))
        if self.mode == "none" and vae.config.decoder == "bernoulli":
            self.log(datasets.NONE_BINARIZATION_WARNING)
        n_steps = math.ceil(len(self.train_x) / cfg.batch_size)
        with _StopOnSignal() as stop:
            while self.epoch < cfg.epochs:
                self._run_epoch(n_steps, stop)
        return self.finish()

    def _run_epoch(self, n_steps: int, stop: _StopOnSignal) -> None:
        from tqdm.auto import tqdm

        cfg, vae, e = self.cfg, self.vae, self.epoch
        if cfg.schedule != "constant":  # (a constant one leaves the optimiser's lr alone)
            vae.optimizer.lr = learning_rate(cfg.schedule, vae.config.learning_rate, e)
        t0, c0 = time.perf_counter(), time.process_time()
        rng = np.random.default_rng([cfg.seed, e])  # data order and binarisation of epoch e
        batches = datasets.iterate_batches(self.train_x, cfg.batch_size, rng=rng,
                                           binarize=self.mode, dtype=vae.dtype, out=self._batch,
                                           dequantize=self.dequantize)
        sums = np.zeros(3)
        last_finite = self.history.get("train_loss", [math.nan])[-1]
        bar = tqdm(total=n_steps, initial=self.step_in_epoch, desc=f"epoch {e + 1}/{cfg.epochs}",
                   leave=False, disable=not cfg.progress, unit="batch")
        seen = 0
        for i, x in enumerate(batches):
            if i < self.step_in_epoch:  # resuming mid-epoch: replay the draws, skip the steps
                continue
            beta = self.beta_at(e, i, n_steps)
            loss, recon, kl = vae.step(x, beta)
            if not math.isfinite(loss):
                bar.close()
                raise DivergenceError(
                    f"the loss became {loss} at step {vae.optimizer.t} (epoch {e + 1}); last "
                    f"finite loss {last_finite:.4g}. The last good checkpoint "
                    f"{self.out / CHECKPOINT} is unchanged. Try a smaller learning rate (now "
                    f"{vae.config.learning_rate:g}) and check the data range")
            last_finite = loss
            sums += (loss * len(x), recon * len(x), kl * len(x))
            seen += len(x)
            self.step_in_epoch = i + 1
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss:.2f}", refresh=False)
            bar.update(1)
            if self.on_step is not None:
                self.on_step(self, i)
            if stop.signum is not None:
                bar.close()
                raise TrainingInterrupted(stop.signum, self.save(), e, vae.optimizer.t)
        bar.close()
        self._end_epoch(sums / max(seen, 1), time.perf_counter() - t0, time.process_time() - c0)

    def _end_epoch(self, train_means: np.ndarray, seconds: float, cpu: float) -> None:
        e, cfg = self.epoch, self.cfg
        recon, kl = self.vae.elbo_terms(self.test_x, n_samples=cfg.eval_samples,
                                        rng=np.random.default_rng([cfg.seed, e, 1]))
        row = {"epoch": e + 1, "train_loss": train_means[0], "train_recon": train_means[1],
               "train_kl": train_means[2], "test_loss": float(np.mean(recon + kl)),
               "test_recon": float(np.mean(recon)), "test_kl": float(np.mean(kl)),
               "beta": self.beta_at(e + 1, 0, 1), "lr": self.vae.optimizer.lr,
               "seconds": seconds, "cpu_seconds": cpu}
        c = self.vae.config
        if c.objective == "iwae":  # the bound it trains on, on the test set: -L_k (IWAE-1)
            lk = importance_weighted_bound(self.vae, self.test_x, c.k,
                                           np.random.default_rng([cfg.seed, e, 2]))
            row["test_neg_lk"] = float(-lk.mean())
        if self.dequantize:  # the bound on the discrete -log P(pixels): nats, bits/dim (GAU-7)
            row["test_discrete_loss"] = discrete_nats(row["test_loss"], self.ds.dim)
            row["test_bits_per_dim"] = bits_per_dim(row["test_discrete_loss"], self.ds.dim)
        done = len(self.history.get("epoch", []))
        for key, value in row.items():  # a column new to a resumed run starts with NaNs
            self.history.setdefault(key, [math.nan] * done).append(
                float(value) if key != "epoch" else value)
        discrete = (f"  [{row['test_discrete_loss']:.2f} nats, {row['test_bits_per_dim']:.4f} "
                    "bits/dim discrete]" if self.dequantize else "")
        bound = f"  -L_{c.k} {row['test_neg_lk']:8.3f}" if "test_neg_lk" in row else ""
        name = "-ELBO" if (c.objective, c.k) == ("elbo", 1) else (
            f"-L_{c.k}" if c.objective == "iwae" else f"-ELBO(k={c.k})")
        self.log(f"epoch {e + 1:3d}/{cfg.epochs}  train {name} {row['train_loss']:8.3f}  "
                 f"test -ELBO {row['test_loss']:8.3f} (recon {row['test_recon']:8.3f}  KL "
                 f"{row['test_kl']:6.3f}){bound}{discrete}  {seconds:5.1f} s")
        self.epoch, self.step_in_epoch = e + 1, 0
        self.save()
        self._write_history()
        if self.on_epoch is not None:
            self.on_epoch(self, row)

    def finish(self) -> dict:
        """Final evaluation (results.json) and figures."""
        cfg, vae = self.cfg, self.vae
        rng = np.random.default_rng([cfg.seed, 10**6])
        recon, kl = vae.elbo_terms(self.test_x, n_samples=cfg.eval_samples, rng=rng)
        results = {"dataset": cfg.dataset, "binarization": self.mode,
                   "dequantized": self.dequantize, "epochs": self.epoch,
                   "test_examples": len(self.test_x), "elbo_samples": cfg.eval_samples,
                   "test_neg_elbo": float(np.mean(recon + kl)),
                   "test_recon": float(np.mean(recon)), "test_kl": float(np.mean(kl)),
                   "objective": vae.config.objective, "k": vae.config.k,
                   "active_units": active_units(vae, self._train_floats())}
        if cfg.iw_samples > 0:
            lk = importance_weighted_bound(vae, self.test_x, cfg.iw_samples, rng,
                                           progress=cfg.progress)
            results.update(iw_samples=cfg.iw_samples, test_neg_log_likelihood_iw=float(-lk.mean()))
        if self.dequantize:  # bounds on -log P of the discrete pixels, nats and bits/dim
            results.update(discrete_report(results["test_neg_elbo"], self.ds.dim,
                                           results.get("test_neg_log_likelihood_iw"), "test_"))
        write_text_atomic(self.out / "results.json", json.dumps(results, indent=1))
        if cfg.figures:
            self.figures()
        return results

    def figures(self) -> dict:
        """Every figure of ``numpyvae.plots`` into ``out_dir/figures``."""
        return write_figures(self.vae, self.cfg, self.ds, self.test_labels, self.history,
                             self.out / "figures")


def train(model_cfg: VAEConfig, train_cfg: TrainConfig, out_dir=None, resume=False, log=print,
          expect: dict | None = None, keep_epochs: bool = False):
    """Train (or resume) a run; returns (vae, results). On resume, ``train_cfg.epochs`` is the
    new total unless ``keep_epochs``; ``expect``: see ``Trainer``."""
    out = Path(out_dir) if out_dir is not None else default_run_dir(model_cfg, train_cfg)
    trainer = Trainer(model_cfg, None if (resume and keep_epochs) else train_cfg, out,
                      resume=resume, log=log, expect=expect)
    results = trainer.run()
    return trainer.vae, results
