"""The demo's figure: latent scatter, manifold, loss curve and explorer, sized for a projector.

One ``Figure`` of 12.8 × 7.2 inches at 100 dpi, i.e. 1280 × 720 pixels, the resolution a lecture
hall projector shows without scaling; fonts are 14–22 pt so the back row can read them.

    ┌──────────── 2-D VAE on MNIST · epoch 3/10 · test −ELBO 160.2 nats ───────────┐
    │ scatter of test μ (+legend) │ 20×20 decoded grid over z │ loss per epoch    │
    │   dashed square = the grid  │                           │ decoded x at z ✛ │
    └──────────────── footer: the run (frames) or the keys (window) ───────────────┘

Scatter and manifold both have z on their axes, so a digit's cluster sits where its images
appear; every frame has the same limits, so the frames play as an animation. The explorer
panel decodes the single z under the cross (the mouse, in the window; z = 0 in saved frames).
Only ``matplotlib.figure.Figure`` here: the headless path never imports pyplot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_write
from .plots import grid_canvas

SCATTER_LIM = 4.0  # fixed limits [-4, 4]^2, so every frame is comparable
SPAN, N_GRID = 3.0, 20  # the manifold: 20 x 20 decoded z over [-3, 3]^2
FIGSIZE, DPI = (12.8, 7.2), 100  # 1280 x 720 pixels: a projector's native size
PX = (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
FONT = {"title": 24, "label": 16, "ticks": 14, "legend": 14, "footer": 15}
TRAIN_COLOUR, TEST_COLOUR = "tab:blue", "tab:orange"


def grid_z() -> np.ndarray:
    """(N_GRID², 2) latent points, row by row from the top (largest z₂), z₁ increasing."""
    values = np.linspace(-SPAN, SPAN, N_GRID)
    z2, z1 = np.meshgrid(values[::-1], values, indexing="ij")
    return np.column_stack([z1.ravel(), z2.ravel()])


def layout(legend: float) -> list[tuple]:
    """Axes boxes (left, bottom, width, height; figure fractions) of scatter, manifold, loss
    curve and explorer, placed in pixels of the 1280 × 720 frame.

    Width decides: two equal squares, the legend between them (``legend`` pixels wide, as
    measured) and a right column for the loss curve above the explorer; what height is left
    over goes above and below, evenly.
    """
    w, h = PX
    y_ticks, right_ticks, right, margin = 64, 52, 176, 14  # z₂ label and ticks; loss ticks
    side = (w - 2 * y_ticks - legend - right_ticks - right - 2 * margin) / 2
    top_band, bottom_band = 70 + 34, 36 + 56  # title + panel title; footer + ticks + z₁
    side = min(side, h - top_band - bottom_band)
    bottom = bottom_band + (h - top_band - bottom_band - side) / 2
    x_z = margin + y_ticks
    x_x = x_z + side + legend + y_ticks
    x_r = x_x + side + right_ticks
    explore = min(right, side / 2 - 40)  # its two-line title goes above it
    loss_bottom = bottom + explore + 46 + 30  # explorer, its title, the loss's epoch ticks
    boxes = [(x_z, bottom, side, side), (x_x, bottom, side, side),
             (x_r, loss_bottom, right, bottom + side - loss_bottom),
             (x_r + (right - explore) / 2, bottom, explore, explore)]
    return [(x / w, y / h, bw / w, bh / h) for x, y, bw, bh in boxes]


class DemoFigure:
    """The four panels at fixed places (``layout``); ``update`` changes data, never the layout.

    No layout engine: recomputed every frame, the axes would shift by a few pixels with the
    data (tick labels, points outside the axes) and the animation would jitter.
    """

    def __init__(self, fig: Figure, labels: np.ndarray | None, class_names: Sequence[str] | None,
                 epochs: int, legend_title: str = "digit", footer: str = "", beta: float = 1.0,
                 train_label: str | None = None):
        """``beta``: the training objective's KL weight; the train curve is recon + β·KL (the
        trainer's loss), the test curve the true −ELBO, so with β ≠ 1 the legend says so.
        ``train_label``: the train curve's legend for another objective (e.g. "train −L₅")."""
        self.fig, self.epochs, self.beta = fig, epochs, beta
        self.train_label = train_label
        self.z = (0.0, 0.0)  # the explorer's latent point
        self.legend = None
        axes = [fig.add_axes(box) for box in layout(legend=80)]
        self.ax_z, self.ax_x, self.ax_loss, self.ax_explore = axes
        self._scatter_panel(labels, class_names, legend_title)
        self._manifold_panel()
        self._loss_panel()
        self._explorer_panel()
        self.title = fig.text(0.5, 1 - 22 / PX[1], "epoch", ha="center", va="top",
                              fontsize=FONT["title"])
        self.footer = fig.text(0.5, 8 / PX[1], footer, ha="center", va="bottom",
                               fontsize=FONT["footer"], color="0.3")
        if self.legend is not None:  # now place the axes around the legend's real width
            fig.draw_without_rendering()
            width = self.legend.get_window_extent().width * 100 / fig.dpi  # in frame pixels
            for ax, box in zip(axes, layout(legend=width + 16), strict=True):
                ax.set_position(box)

    # ------------------------------------------------------------------ building
    def _scatter_panel(self, labels, class_names, legend_title: str) -> None:
        ax = self.ax_z
        n = 0 if labels is None else len(labels)
        colours = (colormaps["tab10"](np.asarray(labels) % 10) if labels is not None
                   else "tab:blue")
        self.scatter = ax.scatter(np.full(n, np.nan), np.full(n, np.nan), c=colours, s=7,
                                  alpha=0.6, linewidths=0)
        ax.add_patch(Rectangle((-SPAN, -SPAN), 2 * SPAN, 2 * SPAN, fill=False, ls="--", lw=1.5,
                               ec="0.35"))
        ax.set_title(f"encoder means μ of {n} test images", fontsize=FONT["label"])
        if labels is not None and class_names:
            handles = [Line2D([], [], ls="", marker="o", ms=10, color=colormaps["tab10"](k))
                       for k in range(len(class_names))]
            self.legend = ax.legend(handles, class_names, title=legend_title, loc="center left",
                      bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=FONT["legend"],
                      title_fontsize=FONT["legend"], handletextpad=0.05, borderaxespad=0.2,
                      labelspacing=0.35)
        self.outside = ax.text(0.02, 0.98, "", transform=ax.transAxes, va="top",
                               fontsize=FONT["ticks"], color="0.35")
        self._z_axes(ax, SCATTER_LIM)
        ax.set(xlim=(-SCATTER_LIM, SCATTER_LIM), ylim=(-SCATTER_LIM, SCATTER_LIM),
               aspect="equal")

    def _manifold_panel(self) -> None:
        ax = self.ax_x
        half = SPAN / (N_GRID - 1)  # half a tile: tile centres land exactly on the z grid
        self.image = ax.imshow(np.zeros((28 * N_GRID, 28 * N_GRID)), cmap="gray", vmin=0.0,
                               vmax=1.0, interpolation="nearest",
                               extent=(-SPAN - half, SPAN + half, -SPAN - half, SPAN + half))
        ax.set_title(f"decoded z, {N_GRID}×{N_GRID} grid", fontsize=FONT["label"])
        self._z_axes(ax, SPAN)

    @staticmethod
    def _z_axes(ax, lim: float) -> None:
        ax.set_xticks(np.arange(-lim, lim + 1))
        ax.set_yticks(np.arange(-lim, lim + 1))
        ax.set_xlabel("z₁", fontsize=FONT["label"], labelpad=0)
        ax.set_ylabel("z₂", fontsize=FONT["label"], rotation=0, labelpad=12)
        ax.tick_params(labelsize=FONT["ticks"])

    def _loss_panel(self) -> None:
        ax = self.ax_loss
        train = self.train_label or ("train" if self.beta == 1 else f"train, β = {self.beta:g}")
        (self.train_line,) = ax.plot([], [], "o-", color=TRAIN_COLOUR, ms=4, label=train)
        (self.test_line,) = ax.plot([], [], "o-", color=TEST_COLOUR, ms=4, label="test")
        ax.set_title("−ELBO (nats)" if self.train_label is None else "loss (nats)",
                     fontsize=FONT["label"])
        ax.set_xlim(0.5, max(self.epochs, 1) + 0.5)
        ax.set_ylim(100, 250)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(labelsize=FONT["ticks"] - 2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FONT["ticks"] - 2, loc="upper right", frameon=False,
                  handlelength=1.2, borderaxespad=0.1)
        self.loss_note = ax.text(0.5, 0.4, "", transform=ax.transAxes, ha="center",
                                 va="center", fontsize=FONT["ticks"], color="0.35")

    def _explorer_panel(self) -> None:
        ax = self.ax_explore
        self.explored = ax.imshow(np.zeros((28, 28)), cmap="gray", vmin=0.0, vmax=1.0,
                                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        self.explore_title = ax.set_title(self._explore_text(self.z), fontsize=FONT["ticks"])
        (self.cross_z,) = self.ax_z.plot([0], [0], "+", color="k", ms=16, mew=2.5)
        (self.cross_x,) = self.ax_x.plot([0], [0], "+", color="red", ms=16, mew=2.5)

    # ------------------------------------------------------------------ updating
    def update(self, mu: np.ndarray, images: np.ndarray, title: str) -> None:
        """mu (n, 2) in the order of ``labels``; images (N_GRID², 784) in ``grid_z`` order."""
        self.scatter.set_offsets(mu)
        n_out = int(np.sum(np.any(np.abs(mu) > SCATTER_LIM, axis=1)))
        self.outside.set_text(f"{n_out} outside the axes" if n_out else "")
        self.image.set_data(grid_canvas(images, (28, 28), N_GRID, N_GRID, pad=0))
        self.title.set_text(title)
        self.title.set_fontsize(FONT["title"])
        width = self.title.get_window_extent().width / self.fig.bbox.width
        if width > 0.98:  # a long title (β, a pretrained model's name) shrinks to fit
            self.title.set_fontsize(FONT["title"] * 0.98 / width)

    def update_loss(self, history: dict) -> None:
        """The train and test −ELBO of every finished epoch (``Trainer.history``)."""
        epochs = history.get("epoch", [])
        ax = self.ax_loss
        if not epochs:  # no ticks to read: the panel says when its curve will come
            note = "after\nepoch 1" if self.epochs else "explore\nonly: no\ntraining"
            self.loss_note.set_text(note)
            ax.tick_params(labelbottom=False, labelleft=False)
            return
        ax.tick_params(labelbottom=True, labelleft=True)
        self.loss_note.set_text("")
        self.train_line.set_data(epochs, history["train_loss"])
        self.test_line.set_data(epochs, history["test_loss"])
        values = np.concatenate([history["train_loss"], history["test_loss"]])
        lo, hi = float(np.min(values)), float(np.max(values))
        pad = max(0.1 * (hi - lo), 2.0)
        self.ax_loss.set_ylim(lo - pad, hi + pad)
        self.ax_loss.set_xlim(0.5, max(self.epochs, len(epochs), 1) + 0.5)

    @staticmethod
    def _explore_text(z: tuple[float, float]) -> str:
        return f"decoded at\nz = ({z[0]:+.1f}, {z[1]:+.1f})"

    def explore(self, z: tuple[float, float], image: np.ndarray) -> None:
        """Show the decoded image (784,) of the single latent point z and mark z."""
        self.z = (float(z[0]), float(z[1]))
        self.explored.set_data(np.asarray(image, dtype=float).reshape(28, 28))
        self.explore_title.set_text(self._explore_text(z))
        for cross in (self.cross_z, self.cross_x):
            cross.set_data([z[0]], [z[1]])


def save_frame(fig: Figure, path: Path) -> Path:
    """PNG of the whole figure at DPI, written atomically; no tight bbox, which would let the
    frame size follow the contents: an animation needs every frame the same size."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})  # faster
    return path


def assemble_gif(frames: Sequence[Path], path: Path, frame_ms: int = 700,
                 last_ms: int = 2500, size: tuple[int, int] | None = None) -> Path:
    """An endlessly looping GIF of the PNG frames (the last one held longer), written atomically.

    Pillow directly rather than ``matplotlib.animation.PillowWriter``: that writer grabs frames
    from a live figure, and these are already files. A frame of another size (a resized
    window) is padded to the first frame's size; ``size`` scales every frame down (for the
    docs). Each frame gets its own 256-colour palette by octree: Pillow's default (median
    cut) spends the palette on the manifold's greys and turns the blue of digit 0 teal and the
    olive of 8 orange, so the legend would lie.
    """
    from PIL import Image, ImageOps

    images = [Image.open(f).convert("RGB") for f in frames]
    first = images[0].size
    images = [im if im.size == first else ImageOps.pad(im, first, color="white")
              for im in images]
    if size is not None:
        images = [im.resize(size, Image.Resampling.LANCZOS) for im in images]
    images = [im.quantize(256, method=Image.Quantize.FASTOCTREE) for im in images]
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=[frame_ms] * (len(images) - 1) + [last_ms])
    return path
