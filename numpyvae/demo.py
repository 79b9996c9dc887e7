"""The lecture demo: a 2-D VAE on MNIST whose latent space organises itself, epoch by epoch.

    numpyvae demo                       # live window where there is a display
    numpyvae demo --no-window --out /tmp/demo

After every epoch one frame is drawn: left, the encoder means μ of 5000 test digits coloured by
digit; right, the decoder's mean image on a 20×20 grid over z ∈ [−3, 3]². Both panels have z
on their axes, so the dashed square on the left is the region drawn on the right, and a
digit's cluster sits where its images appear. Every frame has the same axis limits, so frames
can be compared and played as an animation::

    <out>/frames/epoch_01.png ...   one PNG per epoch (stale epoch_*.png are removed first)
          latent.gif               all frames, assembled at the end
          checkpoint.npz, history.csv/json, config.json, results.json
                                   as any ``numpyvae train`` run: ``VAE.load``,
                                   ``numpyvae evaluate`` and ``numpyvae plot`` work on it

The training is not a loop of its own: it is ``numpyvae.training.Trainer``, which calls back after
every epoch to draw the frame. So the demo has the trainer's seeds, data preparation,
evaluation, divergence check and Ctrl-C handling, and its history equals that of
``numpyvae train --latent 2 --train-size N --test-size 5000`` with the same seed and backend
(``tests/test_demo.py`` checks this). Running it again into the same directory replaces the
earlier demo run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .argtypes import non_negative, positive
from .atomic import atomic_write
from .data import to_float
from .model import VAEConfig
from .plots import grid_canvas
from .training import CHECKPOINT, TrainConfig, Trainer

# train_size=None means this many images. Ten epochs of all 60000 are ~4 TFLOP: ~55 s at the
# best rate measured on two cores (~75 GFLOP/s, Numba backend), more than the 40 s a lecture
# can spare; 20000 take a third of that, and the clusters still form.
DEMO_TRAIN_SIZE = 20000
N_TEST = 5000  # test digits in the scatter and in the test -ELBO
BATCH_SIZE = 100
SCATTER_LIM = 4.0  # fixed limits [-4, 4]^2, so every frame is comparable
SPAN, N_GRID = 3.0, 20  # the manifold: 20 x 20 decoded z over [-3, 3]^2
FIGSIZE, DPI = (15.0, 7.5), 100  # 1500 x 750 pixel frames
FONT = {"title": 24, "label": 18, "ticks": 14, "legend": 15}


def window_available() -> bool:
    """True if a live matplotlib window can open: a display and an interactive backend.

    Without DISPLAY/WAYLAND_DISPLAY on Linux this returns False without importing pyplot.
    """
    if sys.platform not in ("darwin", "win32") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib.pyplot as plt

    try:
        from matplotlib.backends import BackendFilter, backend_registry

        interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib.rcsetup import interactive_bk as interactive
    return plt.get_backend().lower() in {name.lower() for name in interactive}


class DemoFigure:
    """The two panels, built once; ``update`` moves the points and swaps the image in place."""

    def __init__(self, fig: Figure, labels: np.ndarray, class_names: Sequence[str]):
        self.fig = fig
        ax_z, ax_x = fig.subplots(1, 2)
        colours = colormaps["tab10"](np.asarray(labels) % 10)
        self.scatter = ax_z.scatter(np.full(len(labels), np.nan), np.full(len(labels), np.nan),
                                    c=colours, s=9, alpha=0.6, linewidths=0)
        ax_z.add_patch(Rectangle((-SPAN, -SPAN), 2 * SPAN, 2 * SPAN, fill=False, ls="--",
                                 lw=1.5, ec="0.35"))
        ax_z.set(xlim=(-SCATTER_LIM, SCATTER_LIM), ylim=(-SCATTER_LIM, SCATTER_LIM),
                 aspect="equal")
        ax_z.set_title(f"encoder means μ of {len(labels)} test digits", fontsize=FONT["label"])
        handles = [Line2D([], [], ls="", marker="o", ms=11, color=colormaps["tab10"](k))
                   for k in range(len(class_names))]
        ax_z.legend(handles, class_names, title="digit", loc="center left",
                    bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=FONT["legend"],
                    title_fontsize=FONT["legend"], handletextpad=0.1)
        self.outside = ax_z.text(0.02, 0.98, "", transform=ax_z.transAxes, va="top",
                                 fontsize=FONT["ticks"], color="0.35")
        half = SPAN / (N_GRID - 1)  # half a tile: tile centres land exactly on the z grid
        self.image = ax_x.imshow(np.zeros((28 * N_GRID, 28 * N_GRID)), cmap="gray", vmin=0.0,
                                 vmax=1.0, interpolation="nearest",
                                 extent=(-SPAN - half, SPAN + half, -SPAN - half, SPAN + half))
        ax_x.set_title(f"decoded z on a {N_GRID}×{N_GRID} grid over [−{SPAN:g}, {SPAN:g}]²",
                       fontsize=FONT["label"])
        for ax, lim in ((ax_z, SCATTER_LIM), (ax_x, SPAN)):
            ax.set_xticks(np.arange(-lim, lim + 1))
            ax.set_yticks(np.arange(-lim, lim + 1))
            ax.set_xlabel("z₁", fontsize=FONT["label"])
            ax.set_ylabel("z₂", fontsize=FONT["label"], rotation=0, labelpad=12)
            ax.tick_params(labelsize=FONT["ticks"])
        self.title = fig.suptitle("epoch", fontsize=FONT["title"])  # its height, for the layout
        # Lay out once, then freeze: recomputed every frame, the axes would shift by a few
        # pixels with the data (points outside the axes) and the animation would jitter.
        fig.draw_without_rendering()
        fig.set_layout_engine("none")

    def update(self, mu: np.ndarray, images: np.ndarray, title: str) -> None:
        """mu (n, 2) in the order of ``labels``; images (N_GRID², 784) in ``grid_z`` order."""
        self.scatter.set_offsets(mu)
        n_out = int(np.sum(np.any(np.abs(mu) > SCATTER_LIM, axis=1)))
        self.outside.set_text(f"{n_out} outside the axes" if n_out else "")
        self.image.set_data(grid_canvas(images, (28, 28), N_GRID, N_GRID, pad=0))
        self.title.set_text(title)


def grid_z() -> np.ndarray:
    """(N_GRID², 2) latent points, row by row from the top (largest z₂), z₁ increasing."""
    values = np.linspace(-SPAN, SPAN, N_GRID)
    z2, z1 = np.meshgrid(values[::-1], values, indexing="ij")
    return np.column_stack([z1.ravel(), z2.ravel()])


def save_frame(fig: Figure, path: Path) -> Path:
    """PNG of the whole figure at DPI, written atomically; no tight bbox, which would let the
    frame size follow the contents: an animation needs every frame the same size."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})  # faster
    return path


def assemble_gif(frames: Sequence[Path], path: Path, frame_ms: int = 700,
                 last_ms: int = 2500) -> Path:
    """An endlessly looping GIF of the PNG frames (the last one held longer), written atomically.

    Pillow directly rather than ``matplotlib.animation.PillowWriter``: that writer grabs frames
    from a live figure, and these are already files. A frame of another size (a resized
    window) is padded to the first frame's size. Each frame gets its own 256-colour palette by
    octree: Pillow's default (median cut) spends the palette on the manifold's greys and
    turns the blue of digit 0 teal and the olive of 8 orange, so the legend would lie.
    """
    from PIL import Image, ImageOps

    images = [Image.open(f).convert("RGB") for f in frames]
    size = images[0].size
    images = [(im if im.size == size else ImageOps.pad(im, size, color="white"))
              .quantize(256, method=Image.Quantize.FASTOCTREE) for im in images]
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=[frame_ms] * (len(images) - 1) + [last_ms])
    return path


class _Window:
    """The live pyplot window, if one could be opened; every method is safe when it is closed."""

    def __init__(self, log: Callable[[str], None]):
        import matplotlib.pyplot as plt

        self.plt, self.log = plt, log
        plt.ion()
        self.fig = plt.figure("numpyvae demo", figsize=FIGSIZE, layout="constrained")

    def is_open(self) -> bool:
        return self.plt.fignum_exists(self.fig.number)

    def draw(self) -> None:
        if self.is_open():
            self.fig.canvas.draw_idle()
            self.plt.pause(0.001)

    def keep_alive(self) -> None:
        """Handle window events mid-epoch, so the desktop does not call it unresponsive."""
        if self.is_open():
            self.fig.canvas.flush_events()

    def wait_until_closed(self) -> None:
        self.plt.ioff()
        if self.is_open():
            self.log("close the window to finish")
            self.plt.show()  # blocks until the window is closed


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def run_demo(epochs: int = 10, out: str | os.PathLike[str] = Path("runs/demo"),
             train_size: int | None = None, window: bool = True, seed: int = 0,
             backend: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Train the 784-500-500-2 VAE on MNIST and draw its latent space after every epoch.

    Args:
        epochs: passes over the training images.
        out: run directory: frames/, latent.gif and the files of a ``numpyvae train`` run.
        train_size: training images to use; None: DEMO_TRAIN_SIZE (pass 60000 for all).
        window: show a live window if one can open (see ``window_available``); False never
            imports pyplot.
        seed: model initialisation, noise, data order and binarisation, as in ``train``.
        backend: "numpy" or "numba"; None: the package default.
        log: receives one line per epoch and the paths written.

    Returns:
        {"history": {column: [value per epoch]}, "frames": [Path], "gif": Path or None,
        "model": Path, "out": Path, "vae": VAE, "seconds": wall time}.
    """
    t_start = time.perf_counter()
    n_train = DEMO_TRAIN_SIZE if train_size is None else int(train_size)
    if n_train < 1 or epochs < 1:
        raise ValueError(f"epochs and train_size must be >= 1 (train_size None means "
                         f"{DEMO_TRAIN_SIZE}), got {epochs} and {train_size}")
    out = Path(out)
    frames_dir = out / "frames"
    model_cfg = VAEConfig(hidden=(500, 500), n_latent=2, activation="softplus",
                          decoder="bernoulli", seed=seed, learning_rate=1e-3,
                          **({"backend": backend} if backend else {}))
    train_cfg = TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, seed=seed, train_size=n_train,
                            test_size=N_TEST, figures=False, progress=False)
    frames: list[Path] = []
    width = max(2, len(str(epochs)))
    live = panels = grey = None
    z_grid = grid_z()

    def draw(trainer: Trainer, row: dict) -> None:
        """After each epoch (Trainer's on_epoch): update both panels, save the frame."""
        vae = trainer.vae
        panels.update(vae.transform(grey), vae.generate(z_grid),
                      f"2-D VAE on MNIST · epoch {row['epoch']}/{epochs} · "
                      f"test −ELBO {row['test_loss']:.1f} nats")
        frames.append(save_frame(panels.fig, frames_dir / f"epoch_{row['epoch']:0{width}d}.png"))
        if live:
            live.draw()

    def keep_alive(trainer: Trainer, step: int) -> None:
        if step % 10 == 0:
            live.keep_alive()

    trainer = Trainer(model_cfg, train_cfg, out, log=log, overwrite=True, on_epoch=draw)
    frames_dir.mkdir(parents=True, exist_ok=True)
    for stale in frames_dir.glob("epoch_*.png"):  # a longer earlier run must not leak into the GIF
        stale.unlink()
    vae, ds = trainer.vae, trainer.ds
    grey = to_float(ds.test_images[:N_TEST], vae.dtype)  # the scatter uses grey values
    log(f"numpyvae demo: 784-500-500-2 VAE, {len(trainer.train_x)} MNIST training images, "
        f"{_plural(epochs, 'epoch')}, backend {vae.config.backend}; frames in {frames_dir}")

    if window and not window_available():
        log("no live window (no display, or matplotlib has no interactive backend here); "
            "saving frames only")
    elif window:
        try:
            live = _Window(log)
        except Exception as err:  # e.g. a toolkit that fails to start
            log(f"no live window ({type(err).__name__}: {err}); saving frames only")
    if live:
        trainer.on_step = keep_alive  # window events mid-epoch
    fig = live.fig if live else Figure(figsize=FIGSIZE, layout="constrained")
    panels = DemoFigure(fig, trainer.test_labels, ds.class_names)
    if live:  # the untrained model first: the audience sees the window before epoch 1 ends
        panels.update(vae.transform(grey), vae.generate(z_grid),
                      f"2-D VAE on MNIST · epoch 0/{epochs} · untrained")
        live.draw()

    trainer.run()  # one line per epoch through log; draw() after each epoch
    history = trainer.history
    gif = out / "latent.gif"
    try:
        assemble_gif(frames, gif)
        log(f"animation: {gif} ({_plural(len(frames), 'frame')})")
    except Exception as err:  # Pillow missing or broken, disk full: the frames are still there
        log(f"could not write {gif} ({type(err).__name__}: {err}); the frames are in "
            f"{frames_dir}")
        gif = None
    seconds = time.perf_counter() - t_start
    log(f"{_plural(epochs, 'epoch')} in {seconds:.1f} s ({sum(history['seconds']):.1f} s training)")
    if live:
        live.wait_until_closed()
    return {"history": history, "frames": frames, "gif": gif, "model": out / CHECKPOINT,
            "out": out, "vae": vae, "seconds": seconds}


# --------------------------------------------------------------------------- command line
def add_arguments(d) -> None:
    """The flags of ``numpyvae demo`` (``numpyvae.cli`` hands this its sub-parser)."""
    d.add_argument("--epochs", type=positive(int), default=10)
    d.add_argument("--out", type=Path, default=Path("runs/demo"))
    d.add_argument("--train-size", type=positive(int), default=None,
                   help="training images (default 20000, so 10 epochs fit in a lecture slot)")
    d.add_argument("--seed", type=non_negative(int), default=0)
    d.add_argument("--backend", choices=("numpy", "numba"), default=None)
    d.add_argument("--no-window", action="store_true", help="never open a window")


def main(args) -> int:
    """``numpyvae demo``: run the demo with the parsed flags; returns the exit status."""
    run_demo(epochs=args.epochs, out=args.out, train_size=args.train_size,
             window=not args.no_window, seed=args.seed, backend=args.backend)
    return 0
