"""Figures for a trained VAE, built on ``matplotlib.figure.Figure`` (no pyplot, works headless).

Every public function takes plain arrays (images as ``(n, D)`` in [0, 1] plus ``image_shape``)
or callables, and returns a ``Figure``; the numerics behind them (PCA, Φ⁻¹, interpolation)
are in ``numpyvae.latent``, and this module imports nothing else of ``numpyvae``.
``all_figures`` makes the whole set from any object with the ``_Model`` methods.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_write
from .latent import interpolate_latents, norm_cdf, norm_ppf, pca2

__all__ = ["interpolate_latents", "norm_ppf", "pca2"]  # re-exported: figures' numerics

_GREY = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _z(k: int) -> str:
    """'z₁' for latent dimension index 0 (the paper counts from 1)."""
    return "z" + str(k + 1).translate(_SUB)


def _as_images(images: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """(n, D) or (n, h, w) -> (n, h, w) float array."""
    h, w = image_shape
    a = np.asarray(images, dtype=float)
    if a.ndim == 1:
        a = a[None]
    if a.ndim == 2 and a.shape[1] == h * w:
        return a.reshape(-1, h, w)
    if a.ndim == 3 and a.shape[1:] == (h, w):
        return a
    raise ValueError(f"images have shape {a.shape}, expected (n, {h * w}) or (n, {h}, {w}) for "
                     f"image_shape={image_shape}; pass the image_shape the data was flattened from")


def grid_canvas(images: np.ndarray, image_shape: tuple[int, int], nrow: int, ncol: int,
                pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile images row by row into one array of shape (nrow*(h+pad)-pad, ncol*(w+pad)-pad).

    Image k goes to row k // ncol, column k % ncol; unused tiles and padding are ``fill``.
    """
    imgs = _as_images(images, image_shape)
    h, w = image_shape
    if len(imgs) > nrow * ncol:
        raise ValueError(f"{len(imgs)} images do not fit a {nrow}x{ncol} grid; "
                         f"raise nrow/ncol or pass fewer images")
    canvas = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad), fill, dtype=float)
    for k, img in enumerate(imgs):
        r, c = divmod(k, ncol)
        canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    return canvas


def _image_axes(ax, canvas: np.ndarray) -> None:
    ax.imshow(canvas, **_GREY)
    ax.set_xticks([])
    ax.set_yticks([])


def reconstruction_figure(x: np.ndarray, x_recon: np.ndarray, image_shape: tuple[int, int],
                          n: int = 10) -> Figure:
    """Top row: the first n inputs; bottom row: their reconstructions."""
    x, x_recon = _as_images(x, image_shape), _as_images(x_recon, image_shape)
    if len(x) != len(x_recon):
        raise ValueError(f"x has {len(x)} images but x_recon has {len(x_recon)}; "
                         f"pass the reconstructions of exactly these inputs")
    n = min(n, len(x))
    h, w = image_shape
    fig = Figure(figsize=(max(5.0, 1.5 + 0.75 * n), 1.6 * h / w + 0.6), layout="constrained")
    axes = fig.subplots(2, 1)
    for ax, imgs, name in zip(axes, (x, x_recon), ("input", "reconstruction"), strict=True):
        _image_axes(ax, grid_canvas(imgs[:n], image_shape, 1, n))
        ax.set_ylabel(name, rotation=0, ha="right", va="center")  # horizontal: never clipped
    fig.suptitle(f"Reconstructions of {n} test images")
    return fig


def latent_scatter_figure(mu: np.ndarray, labels: np.ndarray | None = None,
                          class_names: Sequence[str] | Mapping[int, str] | None = None) -> Figure:
    """Scatter of the encoder means μ, coloured by class; PCA to 2-D if the latent is wider."""
    mu = np.asarray(mu, dtype=float)
    if mu.ndim != 2 or mu.shape[1] < 2:
        raise ValueError(f"mu has shape {mu.shape}, expected (n, J) with J >= 2")
    J = mu.shape[1]
    fig = Figure(figsize=(7.0, 5.6), layout="constrained")
    ax = fig.subplots()
    if J == 2:
        xy = mu
        ax.set_xlabel(_z(0))
        ax.set_ylabel(_z(1))
        ax.set_title("Encoder means μ of test images")
    else:
        xy, frac, _ = pca2(mu)
        ax.set_xlabel(f"PC 1 ({100 * frac[0]:.1f}% var)")
        ax.set_ylabel(f"PC 2 ({100 * frac[1]:.1f}% var)")
        ax.set_title(f"PCA projection of μ ({J}-D latent)")
    style = {"s": 4, "alpha": 0.6, "linewidths": 0}
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], color="C0", **style)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(mu),):
            raise ValueError(f"labels has shape {labels.shape}, expected ({len(mu)},), "
                             f"one label per row of mu")
        classes = np.unique(labels)
        if len(classes) <= 20:
            cmap = "tab10" if len(classes) <= 10 else "tab20"
            for i, c in enumerate(classes):
                name = str(c) if class_names is None else str(class_names[c])
                ax.scatter(*xy[labels == c].T, color=colormaps[cmap](i),
                           label=name, **style)
            legend = ax.legend(title="class", loc="upper left", bbox_to_anchor=(1.02, 1.0),
                               markerscale=3, frameon=False)
            for handle in legend.legend_handles:
                handle.set_alpha(1.0)
        else:  # too many classes to tell apart by colour: a colorbar of the label value
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="viridis", **style)
            fig.colorbar(sc, ax=ax, label="class")
    ax.set_aspect("equal", adjustable="datalim")
    return fig


# Acklam's rational approximation to the inverse normal CDF (|rel. error| < 1.15e-9 before
# refinement); https://web.archive.org/web/2015/http://home.online.no/~pjacklam/notes/invnorm/
def manifold_figure(decode: Callable[[np.ndarray], np.ndarray], image_shape: tuple[int, int],
                    n: int = 20, span: float = 3.0, grid: str = "linear",
                    dims: tuple[int, int] = (0, 1), n_latent: int = 2,
                    basis: np.ndarray | None = None) -> Figure:
    """Decoded images on an n×n grid of latent points, as one (n*h, n*w) canvas.

    ``basis`` (2, n_latent), optional: two orthonormal latent directions to vary instead of the
    coordinate axes ``dims`` (``all_figures`` passes the first two principal directions of the
    test μ for a latent space of more than 2 dimensions: the plane of the latent scatter).

    grid="linear": z in np.linspace(-span, span, n) (the seed's figure). grid="ppf": z = Φ⁻¹(p)
    at the midpoints p = (i + 0.5)/n of n equal-probability bins (the paper's Fig. 4), so every
    tile covers the same prior mass. Row 0 (top) is the largest z along dims[1]; columns
    increase along dims[0]. Other latent dims are held at 0.
    """
    d0, d1 = dims
    if n < 2:
        raise ValueError(f"n={n}; a manifold grid needs n >= 2 points per axis")
    if d0 == d1 or not (0 <= d0 < n_latent and 0 <= d1 < n_latent):
        raise ValueError(f"dims={dims} must be two different indices in [0, {n_latent})")
    if grid == "linear":
        values = np.linspace(-span, span, n)
        title = f"Decoded {_z(d0)}, {_z(d1)} on a linear grid over [−{span:g}, {span:g}]²"
    elif grid == "ppf":
        p = (np.arange(n) + 0.5) / n
        values = np.asarray(norm_ppf(p))
        title = (f"Decoded z = Φ⁻¹(p), p = {p[0]:.3g} … {p[-1]:.3g}\n"
                 "(equal prior mass per tile, as in Kingma & Welling Fig. 4)")
    else:
        raise ValueError(f"grid={grid!r}; expected 'linear' or 'ppf'")
    rows, cols = np.meshgrid(values[::-1], values, indexing="ij")  # row i: z_d1 = values[-1-i]
    xlabel, ylabel = _z(d0), _z(d1)
    if basis is not None:
        basis = np.asarray(basis, dtype=float)
        if basis.shape != (2, n_latent):
            raise ValueError(f"basis has shape {basis.shape}; expected (2, {n_latent})")
        z = np.outer(cols.ravel(), basis[0]) + np.outer(rows.ravel(), basis[1])
        xlabel, ylabel = "along PC 1 of μ", "along PC 2 of μ"
        title = title.replace(f"{_z(d0)}, {_z(d1)}", "latents")
        title += "\n(the plane of the first two principal directions of μ, through z = 0)"
    else:
        z = np.zeros((n * n, n_latent))
        z[:, d0], z[:, d1] = cols.ravel(), rows.ravel()
        if n_latent > 2:
            title += f"\n(other {n_latent - 2} of {n_latent} latent dims held at 0)"
    imgs = np.asarray(decode(z))
    canvas = grid_canvas(imgs, image_shape, n, n, pad=0)
    h, w = image_shape
    fig = Figure(figsize=(7.0, 7.0 * h / w + 0.4 + 0.25 * title.count("\n")),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(canvas, **_GREY)
    # Ticks at the ends, ±half and 0, placed on the continuous tile index the grid was built
    # from, so on the ppf grid the uneven spacing of z is visible.
    top = float(values[-1])
    ticks = np.array([-top, -round(top / 2, 1), 0.0, round(top / 2, 1), top])
    if grid == "linear":
        frac = (ticks + span) / (2 * span) * (n - 1)
    else:
        frac = n * norm_cdf(ticks) - 0.5
    labels = [f"{round(t, 2):g}" for t in ticks]
    ax.set_xticks(frac * w + (w - 1) / 2, labels)
    ax.set_yticks((n - 1 - frac) * h + (h - 1) / 2, labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def samples_figure(images: np.ndarray, image_shape: tuple[int, int], nrow: int | None = None,
                   title: str = "Samples from the prior") -> Figure:
    """A grid of images (nrow defaults to a near-square layout) as one canvas."""
    imgs = _as_images(images, image_shape)
    nrow = nrow or max(1, math.ceil(math.sqrt(len(imgs))))
    ncol = max(1, math.ceil(len(imgs) / nrow))
    h, w = image_shape
    fig = Figure(figsize=(6.0, 6.0 * (nrow * h) / (ncol * w) + 0.5), layout="constrained")
    _image_axes(fig.subplots(), grid_canvas(imgs, image_shape, nrow, ncol))
    fig.suptitle(title)
    return fig


def interpolation_figure(images: np.ndarray, image_shape: tuple[int, int],
                         title: str = "Interpolation in latent space",
                         row_labels: Sequence[str] | None = None) -> Figure:
    """Decoded interpolation: (steps, D) is one row, (pairs, steps, D) one row per pair.

    row_labels (one per row, e.g. "7 → 2") are written to the left of each row.
    """
    a = np.asarray(images, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"images have shape {a.shape}, expected (steps, D) or (pairs, steps, D)")
    pairs, steps = a.shape[:2]
    h, w = image_shape
    fig = Figure(figsize=(max(6.0, 0.7 * steps * w / h), 0.7 * pairs + 0.9), layout="constrained")
    ax = fig.subplots()
    _image_axes(ax, grid_canvas(a.reshape(pairs * steps, -1), image_shape, pairs, steps))
    if row_labels is not None:
        if len(row_labels) != pairs:
            raise ValueError(f"{len(row_labels)} row_labels for {pairs} rows; pass one per row")
        ax.set_yticks(np.arange(pairs) * (h + 1) + (h - 1) / 2, row_labels)
        ax.tick_params(axis="y", length=0)
    ax.set_xlabel(f"{steps} steps from the first endpoint (left) to the second (right)")
    ax.set_title(title, wrap=True)
    return fig


_CURVES = {  # key: (colour, line style, legend label)
    "train_loss": ("C0", "--", "train"), "test_loss": ("C1", "-", "test"),
    "train_recon": ("C2", "--", "reconstruction (train)"),
    "test_recon": ("C2", "-", "reconstruction (test)"),
    "train_kl": ("C3", "--", "KL (train)"), "test_kl": ("C3", "-", "KL (test)"),
}


def learning_curves_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Left: −ELBO on train and test per epoch. Right: its reconstruction and KL parts."""
    missing = {"epoch", "train_loss", "test_loss"} - set(history)
    if missing:
        raise ValueError(f"history lacks {sorted(missing)}; expected lists under 'epoch', "
                         f"'train_loss', 'test_loss' (optionally 'test_recon', 'test_kl')")
    cols = {k: np.array([np.nan if v is None else v for v in vals], dtype=float)
            for k, vals in history.items() if k in _CURVES or k == "epoch"}
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) != 1 or lengths["epoch"] == 0:
        raise ValueError(f"history lists must be non-empty and equally long, got {lengths}")
    marker = "o" if lengths["epoch"] <= 30 else None
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_elbo, ax_parts = fig.subplots(1, 2)
    for ax, keys in ((ax_elbo, ("train_loss", "test_loss")),
                     (ax_parts, ("train_recon", "test_recon", "train_kl", "test_kl"))):
        for k in keys:
            if k in cols:
                colour, style, label = _CURVES[k]
                ax.plot(cols["epoch"], cols[k], style, color=colour, marker=marker,
                        markersize=4, label=label)
        if not ax.lines:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "not recorded\n(history has no 'test_recon' / 'test_kl')",
                    ha="center", va="center", transform=ax.transAxes)
            continue
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if lengths["epoch"] == 1:
            ax.set_xticks(cols["epoch"])
        ax.grid(alpha=0.3)
        ax.legend()
    ax_elbo.set_title("−ELBO (lower is better)")
    ax_parts.set_title("−ELBO = reconstruction + KL")
    return fig



def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write fig as PNG atomically (see ``numpyvae.atomic``), cropped to its contents."""
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    return path


class _Model(Protocol):
    """What all_figures needs from a trained model (numpyvae.VAE provides it)."""

    n_latent: int

    def transform(self, X: np.ndarray) -> np.ndarray: ...  # (n, D) -> mu (n, J)
    def generate(self, z: np.ndarray) -> np.ndarray: ...  # (m, J) -> images (m, D)
    def reconstruct(self, X: np.ndarray) -> np.ndarray: ...  # (n, D) -> images (n, D)


def all_figures(model: _Model, test_images: np.ndarray, test_labels: np.ndarray | None,
                image_shape: tuple[int, int], history: Mapping[str, Sequence[float]] | None = None,
                class_names: Sequence[str] | Mapping[int, str] | None = None,
                rng: np.random.Generator | None = None,
                out_dir: str | os.PathLike[str] | None = None,
                n_samples: int = 100, steps: int = 10) -> dict[str, Figure]:
    """Every figure for a trained model; saved as <out_dir>/<name>.png when out_dir is given.

    rng draws the prior samples z ~ N(0, I); it is required so the same seed gives the same
    figure. Interpolations run between the μ of the first images of up to 3 pairs of classes.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError("all_figures needs rng=np.random.default_rng(seed) to draw the prior "
                         f"samples, got {rng!r}")
    X, y = np.asarray(test_images), None if test_labels is None else np.asarray(test_labels)
    J = model.n_latent
    figs = {"reconstruction": reconstruction_figure(X[:10], model.reconstruct(X[:10]),
                                                    image_shape)}
    mu_test = model.transform(X[:5000])
    figs["latent_scatter"] = latent_scatter_figure(mu_test, None if y is None else y[:5000],
                                                   class_names)
    # J > 2: the manifold spans the scatter's plane (a coordinate pair may be collapsed units)
    basis = pca2(mu_test)[2] if J > 2 and len(mu_test) > 2 else None
    for name, grid in (("manifold", "linear"), ("manifold_ppf", "ppf")):
        figs[name] = manifold_figure(model.generate, image_shape, grid=grid, n_latent=J,
                                     basis=basis)
    z = rng.standard_normal((n_samples, J))
    figs["samples"] = samples_figure(model.generate(z), image_shape)
    # first image of each class in order of appearance, paired (c0, c1), (c2, c3), ...
    if y is None or len(np.unique(y)) < 2:
        ends, names = [(0, 1)], ["images 0 → 1"]
    else:
        _, first = np.unique(y, return_index=True)
        first = np.sort(first)
        ends = [(first[i], first[i + 1]) for i in range(0, min(len(first) - 1, 6), 2)]
        name = (lambda c: str(c)) if class_names is None else (lambda c: str(class_names[c]))
        names = [f"{name(y[a])} → {name(y[b])}" for a, b in ends]
    mu = model.transform(X[np.ravel(ends)])
    rows = [model.generate(interpolate_latents(mu[2 * i], mu[2 * i + 1], steps))
            for i in range(len(ends))]
    figs["interpolation"] = interpolation_figure(
        np.stack(rows), image_shape, row_labels=names,
        title="Linear interpolation between encoder means μ of two test images")
    if history is not None:
        figs["learning_curves"] = learning_curves_figure(history)
    if out_dir is not None:
        for fig_name, fig in figs.items():
            save_figure(fig, Path(out_dir) / f"{fig_name}.png")
    return figs
