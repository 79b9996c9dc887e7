"""Tests for numpyvae.plots: figure structure, manifold orientation, Φ⁻¹, interpolation, saving."""

from __future__ import annotations

import ast
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from numpyvae import latent, plots
from numpyvae.plots import (
    all_figures,
    grid_canvas,
    interpolate_latents,
    interpolation_figure,
    latent_scatter_figure,
    learning_curves_figure,
    manifold_figure,
    norm_ppf,
    reconstruction_figure,
    samples_figure,
    save_figure,
)

SHAPE = (4, 3)  # small, non-square images: h=4, w=3
D = 12


def canvas_of(ax) -> np.ndarray:
    (image,) = ax.images
    return np.asarray(image.get_array())


def phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


class FakeVAE:
    """A linear 'encoder' and a tanh 'decoder' with the _Model methods."""

    def __init__(self, n_latent: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_latent = n_latent
        self.P = rng.standard_normal((D, n_latent))
        self.W = rng.standard_normal((n_latent, D))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - 0.5) @ self.P

    def generate(self, z: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(z @ self.W))

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        return self.generate(self.transform(X))


# --- grid_canvas -----------------------------------------------------------------------------

def test_grid_canvas_places_images_row_major_with_padding():
    imgs = np.arange(5)[:, None] / 10 * np.ones((5, D))
    canvas = grid_canvas(imgs, SHAPE, nrow=2, ncol=3, pad=1)
    assert canvas.shape == (2 * 5 - 1, 3 * 4 - 1)
    assert np.all(canvas[5:9, 4:7] == 0.4)  # image 4: row 1, column 1
    assert np.all(canvas[5:9, 8:11] == 1.0)  # unused tile is fill
    assert np.all(canvas[4, :] == 1.0)  # padding row


def test_grid_canvas_rejects_wrong_shape_and_overflow():
    with pytest.raises(ValueError, match="image_shape"):
        grid_canvas(np.zeros((2, D + 1)), SHAPE, 1, 2)
    with pytest.raises(ValueError, match="do not fit"):
        grid_canvas(np.zeros((5, D)), SHAPE, 2, 2)


# --- reconstruction, samples, interpolation --------------------------------------------------

def test_reconstruction_figure_two_rows_of_n_grey_images():
    rng = np.random.default_rng(0)
    x, x_recon = rng.random((12, D)), rng.random((12, D))
    fig = reconstruction_figure(x, x_recon, SHAPE, n=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["input", "reconstruction"]
    for ax, src in zip(fig.axes, (x, x_recon), strict=True):
        (im,) = ax.images
        assert im.get_clim() == (0.0, 1.0) and im.get_cmap().name == "gray"
        assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
        expected = grid_canvas(src[:5], SHAPE, 1, 5)
        np.testing.assert_array_equal(canvas_of(ax), expected)


def test_samples_figure_near_square_grid_in_one_image():
    fig = samples_figure(np.full((10, D), 0.3), SHAPE, title="prior")
    (ax,) = fig.axes
    assert canvas_of(ax).shape == (4 * 5 - 1, 3 * 4 - 1)  # 4 rows x 3 columns
    assert fig.get_suptitle() == "prior"


def test_interpolation_figure_one_row_or_one_row_per_pair():
    (ax,) = interpolation_figure(np.zeros((7, D)), SHAPE, title="t").axes
    assert canvas_of(ax).shape == (4, 7 * 4 - 1) and ax.get_title() == "t"
    fig = interpolation_figure(np.zeros((3, 7, D)), SHAPE, row_labels=["a", "b", "c"])
    (ax,) = fig.axes
    assert canvas_of(ax).shape == (3 * 5 - 1, 7 * 4 - 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


# --- latent scatter --------------------------------------------------------------------------

def test_latent_scatter_2d_uses_z_labels_and_one_collection_per_class():
    rng = np.random.default_rng(1)
    mu, labels = rng.standard_normal((60, 2)), np.repeat([0, 1, 2], 20)
    fig = latent_scatter_figure(mu, labels, class_names=["zero", "one", "two"])
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₁", "z₂")
    assert len(ax.collections) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    np.testing.assert_array_equal(ax.collections[1].get_offsets(), mu[20:40])


def test_latent_scatter_projects_wide_latents_onto_principal_components():
    rng = np.random.default_rng(2)
    mu = rng.standard_normal((500, 5)) * np.array([0.1, 5.0, 0.2, 2.0, 0.1]) + 7.0
    fig = latent_scatter_figure(mu)  # no labels: a single colour
    (ax,) = fig.axes
    assert ax.get_title() == "PCA projection of μ (5-D latent)"
    assert ax.get_xlabel().startswith("PC 1 (") and ax.get_xlabel().endswith("% var)")
    assert ax.get_ylabel().startswith("PC 2 (")
    pc1_share = float(ax.get_xlabel()[6:].split("%")[0])
    assert 80 < pc1_share < 90  # 25 / (25 + 4 + 0.06) = 86 %
    (points,) = ax.collections
    xy = np.asarray(points.get_offsets())
    np.testing.assert_allclose(xy.mean(axis=0), 0.0, atol=1e-9)  # centred
    assert abs(np.corrcoef(xy[:, 0], mu[:, 1])[0, 1]) > 0.99  # PC 1 is the wide dimension
    assert ax.get_legend() is None


def test_latent_scatter_rejects_one_dimensional_latent():
    with pytest.raises(ValueError, match="J >= 2"):
        latent_scatter_figure(np.zeros((10, 1)))


# --- manifold --------------------------------------------------------------------------------

def encode_z_in_pixels(span: float):
    """A fake decoder: pixel 0 holds z₁, pixel 1 holds z₂, both mapped from [-span, span]."""

    def decode(z: np.ndarray) -> np.ndarray:
        out = np.zeros((len(z), D))
        out[:, 0] = (z[:, 0] + span) / (2 * span)
        out[:, 1] = (z[:, 1] + span) / (2 * span)
        return out

    return decode


def test_manifold_linear_canvas_shape_and_orientation():
    n, span = 5, 3.0
    fig = manifold_figure(encode_z_in_pixels(span), SHAPE, n=n, span=span)
    (ax,) = fig.axes
    canvas = canvas_of(ax)
    h, w = SHAPE
    assert canvas.shape == (n * h, n * w)
    assert canvas[0, 0] == pytest.approx(0.0) and canvas[0, 1] == pytest.approx(1.0)  # top left
    assert canvas[-h, -w] == pytest.approx(1.0) and canvas[-h, -w + 1] == pytest.approx(0.0)
    # z₁ grows left to right along the top row; z₂ falls down the first column
    assert np.all(np.diff(canvas[0, ::w]) > 0) and np.all(np.diff(canvas[::h, 1]) < 0)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₁", "z₂")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-3", "-1.5", "0", "1.5", "3"]
    assert ax.get_xticks()[2] == pytest.approx((n * w - 1) / 2)  # z=0 at the centre


def test_manifold_ppf_grid_uses_inverse_cdf_of_equal_probability_midpoints():
    seen = []

    def decode(z):
        seen.append(z.copy())
        return np.zeros((len(z), D))

    n = 6
    fig = manifold_figure(decode, SHAPE, n=n, grid="ppf")
    expected = norm_ppf((np.arange(n) + 0.5) / n)
    np.testing.assert_allclose(np.unique(seen[0][:, 0]), expected, rtol=1e-12)
    np.testing.assert_allclose(seen[0][0], [expected[0], expected[-1]])  # top left
    assert "Φ⁻¹(p)" in fig.axes[0].get_title()


def test_manifold_higher_latent_varies_chosen_dims_and_holds_others_at_zero():
    seen = []

    def decode(z):
        seen.append(z.copy())
        return np.zeros((len(z), D))

    fig = manifold_figure(decode, SHAPE, n=4, dims=(2, 0), n_latent=5)
    z = seen[0]
    assert z.shape == (16, 5)
    assert np.all(z[:, [1, 3, 4]] == 0) and len(np.unique(z[:, 2])) == 4
    (ax,) = fig.axes
    assert "other 3 of 5 latent dims held at 0" in ax.get_title()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₃", "z₁")


def test_manifold_rejects_bad_arguments():
    decode = encode_z_in_pixels(3.0)
    with pytest.raises(ValueError, match="grid"):
        manifold_figure(decode, SHAPE, grid="log")
    with pytest.raises(ValueError, match="dims"):
        manifold_figure(decode, SHAPE, dims=(0, 0))


# --- norm_ppf --------------------------------------------------------------------------------

def test_norm_ppf_known_values():
    assert norm_ppf(0.975) == pytest.approx(1.959963984540054, rel=1e-12)
    assert norm_ppf(0.5) == 0.0
    assert isinstance(norm_ppf(0.3), float)


def test_norm_ppf_symmetry_round_trip_and_stdlib_agreement():
    p = np.concatenate([np.logspace(-300, -1, 300), np.linspace(0.01, 0.99, 999)])
    x = norm_ppf(p)
    mid = p >= 0.01  # where 1 - p keeps the digits of p
    np.testing.assert_allclose(norm_ppf(1.0 - p[mid]), -x[mid], rtol=1e-9, atol=1e-12)
    central = (p > 1e-12) & (p < 1 - 1e-12)
    back = np.array([phi(v) for v in x[central]])
    np.testing.assert_allclose(back, p[central], rtol=1e-9)
    reference = np.array([statistics.NormalDist().inv_cdf(v) for v in p])
    np.testing.assert_allclose(x, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), np.array([0.5, 1.0])])
def test_norm_ppf_rejects_values_outside_open_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        norm_ppf(bad)


# --- interpolate_latents ---------------------------------------------------------------------

@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_latents_hits_endpoints_exactly(method):
    rng = np.random.default_rng(3)
    z0, z1 = rng.standard_normal(8), rng.standard_normal(8)
    path = interpolate_latents(z0, z1, 9, method=method)
    assert path.shape == (9, 8)
    np.testing.assert_array_equal(path[0], z0)
    np.testing.assert_array_equal(path[-1], z1)


def test_slerp_keeps_norm_where_linear_shrinks_it():
    z0, z1 = np.array([3.0, 0.0, 0.0]), np.array([0.0, 3.0, 0.0])
    slerp = interpolate_latents(z0, z1, 11, method="slerp")
    np.testing.assert_allclose(np.linalg.norm(slerp, axis=1), 3.0, rtol=1e-12)
    np.testing.assert_allclose(slerp[5], [3 / math.sqrt(2), 3 / math.sqrt(2), 0.0])
    linear = interpolate_latents(z0, z1, 11)
    assert np.linalg.norm(linear[5]) == pytest.approx(3 / math.sqrt(2))
    parallel = interpolate_latents(z0, 2 * z0, 3, method="slerp")  # falls back to linear
    np.testing.assert_allclose(parallel[1], 1.5 * z0)
    with pytest.raises(ValueError, match="method"):
        interpolate_latents(z0, z1, 3, method="cubic")


# --- learning curves -------------------------------------------------------------------------

def test_learning_curves_two_panels_with_all_keys():
    history = {"epoch": [1, 2, 3], "train_loss": [200, 150, 120], "test_loss": [205, 160, 130],
               "test_recon": [180, 130, 100], "test_kl": [25, 30, 30]}
    fig = learning_curves_figure(history)
    elbo, parts = fig.axes
    assert len(elbo.lines) == 2 and len(parts.lines) == 2
    assert elbo.get_ylabel() == parts.get_ylabel() == "nats per example"
    assert [t.get_text() for t in parts.get_legend().get_texts()] == [
        "reconstruction (test)", "KL (test)"]
    np.testing.assert_array_equal(elbo.lines[1].get_ydata(), [205, 160, 130])


def test_learning_curves_single_epoch_without_breakdown():
    fig = learning_curves_figure({"epoch": [1], "train_loss": [150.0], "test_loss": [152.0]})
    elbo, parts = fig.axes
    assert all(line.get_marker() == "o" for line in elbo.lines)
    assert len(parts.lines) == 0 and "not recorded" in parts.texts[0].get_text()


def test_learning_curves_reject_missing_or_ragged_history():
    with pytest.raises(ValueError, match="test_loss"):
        learning_curves_figure({"epoch": [1], "train_loss": [1.0]})
    with pytest.raises(ValueError, match="equally long"):
        learning_curves_figure({"epoch": [1, 2], "train_loss": [1.0, 2.0], "test_loss": [1.0]})


# --- saving and the whole set ----------------------------------------------------------------

def test_save_figure_writes_png_atomically_into_new_directories(tmp_path):
    path = tmp_path / "a" / "b" / "fig.png"
    out = save_figure(samples_figure(np.zeros((4, D)), SHAPE), path, dpi=50)
    assert out == path and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in path.parent.iterdir()] == ["fig.png"]  # no temp file left


def test_all_figures_makes_and_saves_every_figure(tmp_path):
    rng = np.random.default_rng(4)
    X, y = rng.random((40, D)), np.repeat([3, 1, 4, 0], 10)
    history = {"epoch": [1, 2], "train_loss": [9.0, 8.0], "test_loss": [9.5, 8.5]}
    names = ["reconstruction", "latent_scatter", "manifold", "manifold_ppf", "samples",
             "interpolation", "learning_curves"]
    figs = all_figures(FakeVAE(3), X, y, SHAPE, history=history, rng=np.random.default_rng(0),
                       out_dir=tmp_path / "figs")
    assert list(figs) == names and all(isinstance(f, Figure) for f in figs.values())
    for name in names:
        assert (tmp_path / "figs" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "PCA" in figs["latent_scatter"].axes[0].get_title()
    rows = [t.get_text() for t in figs["interpolation"].axes[0].get_yticklabels()]
    assert rows == ["3 → 1", "4 → 0"]  # first image of each class, in order of appearance

    again = all_figures(FakeVAE(3), X, y, SHAPE, rng=np.random.default_rng(0))
    assert "learning_curves" not in again
    np.testing.assert_array_equal(canvas_of(again["samples"].axes[0]),
                                  canvas_of(figs["samples"].axes[0]))  # same seed, same samples
    with pytest.raises(ValueError, match="rng"):
        all_figures(FakeVAE(3), X, y, SHAPE)


def test_plots_imports_no_pyplot_and_no_model_code():
    """plots works on arrays and callables: no pyplot state, no numpyvae module but the
    atomic-write helper and the figures' numerics (relative imports have level > 0 and a bare
    module name); the numerics (numpyvae.latent) import nothing but NumPy and math."""
    tree = ast.parse(Path(plots.__file__).read_text(encoding="utf-8"))
    ours = {("." * n.level) + (n.module or "") for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and (n.level > 0 or (n.module or "").startswith(
                "numpyvae"))}
    assert ours == {".atomic", ".latent"}
    latent_tree = ast.parse(Path(latent.__file__).read_text(encoding="utf-8"))
    latent_imports = {n.module for n in ast.walk(latent_tree) if isinstance(n, ast.ImportFrom)}
    latent_imports |= {a.name for n in ast.walk(latent_tree) if isinstance(n, ast.Import)
                       for a in n.names}
    assert latent_imports <= {"__future__", "math", "numpy"}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("pyplot" in m for m in modules if m)


def test_manifold_along_a_basis_equals_the_coordinate_manifold():
    """A basis of unit coordinate vectors gives the same canvas as the matching dims."""
    def decode(z):
        return np.clip(0.5 + 0.15 * z[:, [2, 1, 0, 1]], 0, 1).repeat(4, axis=1)

    basis = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    along = manifold_figure(decode, (4, 4), n=5, n_latent=3, basis=basis)
    coords = manifold_figure(decode, (4, 4), n=5, n_latent=3, dims=(2, 1))
    np.testing.assert_array_equal(along.axes[0].images[0].get_array(),
                                  coords.axes[0].images[0].get_array())
    assert "principal directions" in along.axes[0].get_title()
    assert along.axes[0].get_xlabel() == "along PC 1 of μ"
    with pytest.raises(ValueError, match="basis has shape"):
        manifold_figure(decode, (4, 4), n=5, n_latent=3, basis=np.eye(3))
