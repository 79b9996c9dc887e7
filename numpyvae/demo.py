"""The lecture demo: a 2-D VAE on MNIST whose latent space organises itself, epoch by epoch.

    numpyvae demo                       # live window where there is a display
    numpyvae demo --no-window --out /tmp/demo
    numpyvae demo --pretrained          # a trained model at once: explore its latent space
    numpyvae demo --beta 4              # posterior collapse, live
    numpyvae demo --replay runs/demo    # play a finished demo's frames, full screen

Before training and after every epoch one frame is drawn (``numpyvae.demo_figure``): the
encoder means μ of the test images, the decoded 20×20 grid over z, the loss curve so far and
the decoded image at one z. The window (``numpyvae.demo_window``) adds keys: space pauses, q
stops, and the mouse over z decodes it. The run directory::

    <out>/frames/epoch_00.png ...   the untrained model, then one PNG per epoch
          latent.gif               all frames; written however the run ends (q, a closed
                                   window, Ctrl-C, an error)
          checkpoint.npz, history.csv/json, config.json, results.json
                                   as any ``numpyvae train`` run: ``VAE.load``,
                                   ``numpyvae evaluate`` and ``numpyvae plot`` work on it

The training is not a loop of its own: it is ``numpyvae.training.Trainer``, which calls back
after every step (window events, pause, stop) and every epoch (the frame). So the demo has the
trainer's seeds, data preparation, evaluation, divergence check and Ctrl-C handling, and its
history equals that of ``numpyvae train --latent 2 --train-size N --test-size 5000`` with the
same seed and backend (``tests/test_demo.py`` checks this). Running it again into the same
directory replaces the earlier demo run.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .argtypes import non_negative, positive
from .config import BACKENDS, OBJECTIVES
from .data import to_float
from .demo_figure import DPI, FIGSIZE, N_GRID, SPAN, DemoFigure, assemble_gif, grid_z, save_frame
from .demo_window import KEYS, DemoStopped, window_available
from .model import VAE, VAEConfig
from .training import CHECKPOINT, TrainConfig, Trainer

__all__ = ["DPI", "FIGSIZE", "N_GRID", "SPAN", "assemble_gif", "grid_z", "main", "replay_run",
           "run_demo", "window_available"]

# train_size=None means this many images. Ten epochs of all 60000 are ~4 TFLOP: ~55 s at the
# best rate measured on two cores (~75 GFLOP/s, Numba backend), more than the 40 s a lecture
# can spare; 20000 take a third of that, and the clusters still form.
DEMO_TRAIN_SIZE = 20000
N_TEST = 5000  # test digits in the scatter and in the test -ELBO
BATCH_SIZE = 100
TITLES = {"mnist": ("MNIST", "digit"), "fashion-mnist": ("Fashion-MNIST", "class")}
STALE = ("latent.gif", "results.json", "history.json", "history.csv")  # of an earlier run


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def run_demo(epochs: int = 10, out: str | os.PathLike[str] = Path("runs/demo"),
             train_size: int | None = None, window: bool = True, seed: int = 0,
             backend: str | None = None, log: Callable[[str], None] = print,
             dataset: str = "mnist", beta: float = 1.0, start_from: VAE | None = None,
             start_name: str = "", objective: str = "elbo", k: int = 1) -> dict:
    """Train the 784-500-500-2 VAE and draw its latent space before training and after each
    epoch; in a window, also pause (space), stop (q) and explore z with the mouse.

    Args:
        epochs: passes over the training images; 0 (only with ``start_from``): explore only.
        out: run directory: frames/, latent.gif and the files of a ``numpyvae train`` run.
        train_size: training images to use; None: DEMO_TRAIN_SIZE (pass 60000 for all).
        window: show a live window if one can open (see ``window_available``); False never
            imports pyplot.
        seed: model initialisation, noise, data order and binarisation, as in ``train``.
        backend: "numpy" or "numba" for a new model; None: the package default.
        log: receives one line per epoch and the paths written.
        dataset: "mnist" or "fashion-mnist" (``numpyvae.data.load_dataset``).
        beta: the KL weight; β ≫ 1 shows posterior collapse (every μ at 0).
        start_from: a 784-…-2 model to start from (a copy is trained; the argument is left
            alone), e.g. ``numpyvae.pretrained.load_pretrained("mnist-z2")``.
        start_name: what to call ``start_from`` in the title.
        objective, k: what to train, as ``VAEConfig``: "elbo" (averaged over k samples) or
            "iwae" (Burda et al.'s L_k, beta must be 1); a start model is trained on it too.

    Returns:
        {"history": {column: [value per epoch]}, "frames": [Path], "gif": Path or None,
        "model": Path, "out": Path, "vae": VAE, "seconds": wall time, "first_frame_seconds":
        time to frames/epoch_00.png, "stopped": None or why training stopped early}.
    """
    t_start = time.perf_counter()
    n_train = DEMO_TRAIN_SIZE if train_size is None else int(train_size)
    if n_train < 1 or epochs < 0 or (epochs == 0 and start_from is None):
        raise ValueError(f"train_size must be >= 1 (None means {DEMO_TRAIN_SIZE}) and epochs "
                         f">= 1, or 0 with a model to start from (--pretrained); got epochs="
                         f"{epochs}, train_size={train_size}")
    if dataset not in TITLES:
        raise ValueError(f"the demo shows a 2-D latent space of labelled images: dataset must be "
                         f"one of {list(TITLES)}, got {dataset!r}")
    if start_from is not None and start_from.n_latent != 2:
        raise ValueError(f"the demo draws a 2-D latent space; the start model has "
                         f"n_latent={start_from.n_latent}")
    out, (ds_title, legend_title) = Path(out), TITLES[dataset]
    frames_dir = out / "frames"
    model_cfg = dataclasses.replace(start_from.config, objective=objective, k=k) \
        if start_from is not None else VAEConfig(
            hidden=(500, 500), n_latent=2, activation="softplus", decoder="bernoulli", seed=seed,
            learning_rate=1e-3, objective=objective, k=k,
            **({"backend": backend} if backend else {}))
    train_cfg = TrainConfig(dataset=dataset, epochs=max(epochs, 1), batch_size=BATCH_SIZE,
                            beta=beta, seed=seed, train_size=n_train, test_size=N_TEST,
                            figures=False, progress=False)
    trainer = Trainer(model_cfg, train_cfg, out, log=log, overwrite=True)
    if start_from is not None:  # Trainer builds a fresh model; swap in (a copy of) the start
        if start_from.n_input != trainer.ds.dim:
            raise ValueError(f"the start model has n_input={start_from.n_input}, but "
                             f"{dataset} images have {trainer.ds.dim} pixels")
        if (start_from.config.objective, start_from.config.k) == (objective, k):
            trainer.vae = copy.deepcopy(start_from)
        else:  # the start's weights, optimiser and noise state, trained on the new objective
            trainer.vae.params.flat[...] = start_from.params.flat
            trainer.vae.optimizer.load_state(start_from.optimizer.state())
            trainer.vae.rng.bit_generator.state = start_from.rng.bit_generator.state
    vae, ds = trainer.vae, trainer.ds
    frames_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*frames_dir.glob("epoch_*.png"), *(out / name for name in STALE)]:
        stale.unlink(missing_ok=True)  # a longer earlier run must not leak into the GIF
    grey = to_float(ds.test_images[:N_TEST], vae.dtype)  # the scatter uses grey values
    what = f"pretrained {start_name or 'model'}" if start_from is not None else "2-D VAE"
    beta_note = f" · β = {beta:g}" if beta != 1 else ""
    train_label = None
    if (objective, k) != ("elbo", 1):
        beta_note += f" · IWAE k = {k}" if objective == "iwae" else f" · ELBO, k = {k}"
        sub = str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
        train_label = f"train −L{sub}" if objective == "iwae" else f"train, k = {k}"
    log(f"numpyvae demo: {what} 784-500-500-2, {len(trainer.train_x)} {ds_title} training "
        f"images, {_plural(epochs, 'epoch')}, β = {beta:g}, backend {vae.config.backend}; "
        f"frames in {frames_dir}")

    live = None
    if window and not window_available():
        log("no live window (no display, or matplotlib has no interactive backend here); "
            "saving frames only")
    elif window:
        try:
            from .demo_window import LiveWindow

            live = LiveWindow(log, FIGSIZE)
        except Exception as err:  # e.g. a toolkit that fails to start
            log(f"no live window ({type(err).__name__}: {err}); saving frames only")
    # The frames come from a figure of their own, so that they are 1280 x 720 whatever the
    # window's size, and carry the run's description where the window shows its keys.
    footer = (f"784-500-500-2 VAE · {len(trainer.train_x)} {ds_title} training images · "
              f"β = {beta:g} · seed {seed}")
    views = [DemoFigure(Figure(figsize=FIGSIZE), trainer.test_labels, ds.class_names, epochs,
                        legend_title, footer=footer, beta=beta, train_label=train_label)]
    if live:
        views.append(DemoFigure(live.fig, trainer.test_labels, ds.class_names, epochs,
                                legend_title, footer=KEYS, beta=beta, train_label=train_label))
    z_grid, frames, width = grid_z(), [], max(2, len(str(epochs)))

    def decode(z) -> np.ndarray:
        """One latent point (2,) -> its decoded image (784,), a copy for the explorer."""
        return np.array(vae.generate(np.asarray(z, dtype=vae.dtype)[None])[0])

    def frame(epoch: int, subtitle: str) -> None:
        """Update every panel, save frames/epoch_NN.png, show it."""
        mu, images, z = vae.transform(grey), vae.generate(z_grid), views[-1].z
        x_at_z = decode(z)  # the explorer: z under the mouse, or 0
        for view in views:
            stage = f"epoch {epoch}/{epochs} · " if epochs else ""  # not "0/0" when exploring
            view.update(mu, images, f"{what} on {ds_title} · {stage}{subtitle}{beta_note}")
            view.update_loss(trainer.history)
            view.explore(z, x_at_z)
        frames.append(save_frame(views[0].fig, frames_dir / f"epoch_{epoch:0{width}d}.png"))
        if live:
            live.draw()

    def on_epoch(trainer: Trainer, row: dict) -> None:
        frame(row["epoch"], f"test −ELBO {row['test_loss']:.1f} nats (KL {row['test_kl']:.1f})")
        if live:
            live.check_stop()

    trainer.on_epoch = on_epoch
    if live:
        trainer.on_step = lambda trainer, step: live.poll(step)
        live.attach(views[-1], decode)
    stopped, finished, first_frame = None, False, None
    try:
        frame(0, "untrained (random weights)" if start_from is None
              else "the start model" if epochs else "move the mouse over z")
        first_frame = time.perf_counter() - t_start
        log(f"first frame after {first_frame:.1f} s: {frames[0]}")
        if epochs:
            trainer.run()  # one line per epoch through log; on_epoch draws each frame
        else:
            log("explore only (--epochs 0): nothing is trained")
        finished = True
    except DemoStopped as stop:
        stopped = stop.reason
        ck = trainer.save()
        log(f"stopped ({stopped}) in epoch {trainer.epoch + 1}, after step "
            f"{trainer.step_in_epoch}; checkpoint saved to {ck} (continue it with "
            f"numpyvae train --resume --out {out})")
    finally:  # q, a closed window, Ctrl-C or an error: the audience still gets its GIF
        gif = _write_gif(frames, out / "latent.gif", log)
        if live and not finished:
            live.close()
    seconds = time.perf_counter() - t_start
    history = trainer.history
    if history.get("seconds"):
        log(f"{_plural(len(history['epoch']), 'epoch')} in {seconds:.1f} s "
            f"({sum(history['seconds']):.1f} s training)")
    if live and finished:
        live.wait_until_closed()
    return {"history": history, "frames": frames, "gif": gif, "model": out / CHECKPOINT,
            "out": out, "vae": vae, "seconds": seconds, "first_frame_seconds": first_frame,
            "stopped": stopped}


def _write_gif(frames: list[Path], gif: Path, log: Callable[[str], None]) -> Path | None:
    """The GIF of the frames so far; never raises (it runs while another error may be in
    flight, and the frames are still there)."""
    if not frames:
        return None
    try:
        assemble_gif(frames, gif)
    except Exception as err:  # Pillow missing or broken, disk full
        log(f"could not write {gif} ({type(err).__name__}: {err}); the frames are in "
            f"{frames[0].parent}")
        return None
    log(f"animation: {gif} ({_plural(len(frames), 'frame')})")
    return gif


def replay_run(run: str | os.PathLike[str], window: bool = True,
               log: Callable[[str], None] = print) -> list[Path]:
    """Play a finished demo's frames (RUN/frames/epoch_*.png) in a window, looping, full
    screen where possible; headless, say what would play. Returns the frames."""
    run = Path(run)
    frames = sorted((run / "frames").glob("epoch_*.png"),
                    key=lambda p: int(p.stem.split("_")[1]) if p.stem[6:].isdigit() else -1)
    if not frames:
        where = f"{run} does not exist" if not run.exists() else f"{run}/frames/ has none"
        raise FileNotFoundError(f"nothing to replay: expected demo frames {run}/frames/"
                                f"epoch_*.png but {where}; make them with numpyvae demo "
                                f"--out {run}")
    if window and window_available():
        from .demo_window import replay

        replay(frames, log)
    else:
        log(f"no window (--no-window, or no display or interactive backend here): would play "
            f"{_plural(len(frames), 'frame')} from {run / 'frames'}, {frames[0].name} to "
            f"{frames[-1].name}, looping, 0.7 s each")
    return frames


# --------------------------------------------------------------------------- command line
def add_arguments(d) -> None:
    """The flags of ``numpyvae demo`` (``numpyvae.cli`` hands this its sub-parser)."""
    d.add_argument("--epochs", type=non_negative(int), default=None,
                   help="default 10; with --pretrained 0 (explore the trained model only)")
    d.add_argument("--out", type=Path, default=Path("runs/demo"))
    d.add_argument("--dataset", choices=tuple(TITLES), default="mnist")
    d.add_argument("--beta", type=non_negative(float), default=1.0,
                   help="KL weight; try 4 to watch the posterior collapse")
    d.add_argument("--pretrained", action="store_true",
                   help="start from the shipped 2-D MNIST model (mnist-z2)")
    d.add_argument("--replay", type=Path, default=None, metavar="RUN",
                   help="play RUN/frames/epoch_*.png (no training)")
    d.add_argument("--train-size", type=positive(int), default=None,
                   help="training images (default 20000, so 10 epochs fit in a lecture slot)")
    d.add_argument("--objective", choices=OBJECTIVES, default="elbo",
                   help="iwae: train on Burda et al.'s L_k (see --k)")
    d.add_argument("--k", type=positive(int), default=1, help="samples of z per image")
    d.add_argument("--seed", type=non_negative(int), default=0)
    d.add_argument("--backend", choices=BACKENDS, default=None)
    d.add_argument("--no-window", action="store_true", help="never open a window")


def _load_pretrained(dataset: str, backend: str | None) -> VAE:
    if dataset != "mnist":
        raise ValueError(f"--pretrained: there is no shipped {TITLES[dataset][0]} 2-D model "
                         "(only mnist-z2); drop --pretrained to train one live")
    try:
        from .pretrained import load_pretrained
    except ImportError as err:
        raise FileNotFoundError(f"--pretrained: this install has no shipped models ({err})") \
            from err
    return load_pretrained("mnist-z2", backend=backend)


def main(args) -> int:
    """``numpyvae demo``: run the demo with the parsed flags; returns the exit status."""
    if args.replay is not None:
        replay_run(args.replay, window=not args.no_window)
        return 0
    start = _load_pretrained(args.dataset, args.backend) if args.pretrained else None
    epochs = args.epochs if args.epochs is not None else (0 if args.pretrained else 10)
    run_demo(epochs=epochs, out=args.out, train_size=args.train_size,
             window=not args.no_window, seed=args.seed, backend=args.backend,
             dataset=args.dataset, beta=args.beta, start_from=start,
             start_name="mnist-z2" if start is not None else "", objective=args.objective,
             k=args.k)
    return 0
