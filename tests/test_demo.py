"""The lecture demo, headless: frames, GIF, history, no GUI imports, same numbers as train."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numpyvae import demo
from numpyvae.model import VAE, VAEConfig
from numpyvae.training import TrainConfig, Trainer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GUI_MODULES = ("matplotlib.pyplot", "tkinter", "_tkinter", "PyQt5", "PyQt6", "PySide2",
               "PySide6", "gi", "wx", "matplotlib.backends.backend_tk",
               "matplotlib.backends.backend_qt", "matplotlib.backends.backend_gtk",
               "matplotlib.backends.backend_wx", "matplotlib.backends.backend_macosx")
FRAME_PIXELS = (int(demo.FIGSIZE[0] * demo.DPI), int(demo.FIGSIZE[1] * demo.DPI))
N_TEST = 1000  # test digits per run instead of 5000: the evaluation is most of a tiny run


@pytest.fixture(autouse=True)
def fewer_test_digits(monkeypatch):
    monkeypatch.setattr(demo, "N_TEST", N_TEST)


def gui_modules_loaded(before: set[str]) -> list[str]:
    return sorted(m for m in set(sys.modules) - before if m.startswith(GUI_MODULES))


def run_headless(mp: pytest.MonkeyPatch, **kwargs) -> tuple[dict, list[str], list[str]]:
    """run_demo with pyplot made unimportable: (result, log lines, GUI modules it loaded)."""
    mp.setitem(sys.modules, "matplotlib.pyplot", None)  # importing pyplot now raises
    before = set(sys.modules)
    lines: list[str] = []
    result = demo.run_demo(log=lines.append, **kwargs)
    return result, lines, gui_modules_loaded(before)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "N_TEST", N_TEST)  # the autouse fixture is per test, this is per module
        mp.setenv("DISPLAY", ":0")  # window=False must not even look for a display
        result, lines, gui = run_headless(mp, epochs=2, out=out, train_size=500, window=False)
    return out, result, lines, gui


def test_one_valid_png_frame_per_epoch(two_epochs):
    out, result, _, _ = two_epochs
    frames = sorted((out / "frames").iterdir())
    assert [f.name for f in frames] == ["epoch_01.png", "epoch_02.png"]
    assert result["frames"] == frames
    for f in frames:
        assert f.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(f) as im:
            im.verify()
        with Image.open(f) as im:
            assert im.size == FRAME_PIXELS


def test_gif_has_one_frame_per_epoch(two_epochs):
    out, result, lines, _ = two_epochs
    assert result["gif"] == out / "latent.gif"
    with Image.open(out / "latent.gif") as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 2
        assert gif.size == FRAME_PIXELS
    assert any("latent.gif (2 frames)" in line for line in lines)


def test_history_one_finite_row_per_epoch(two_epochs):
    out, result, _, _ = two_epochs
    h = result["history"]
    assert h["epoch"] == [1, 2]
    for key in ("train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl",
                "seconds"):
        assert len(h[key]) == 2 and all(math.isfinite(v) for v in h[key]), key
    assert h["train_loss"][1] < h["train_loss"][0]  # epoch 1 averages the untrained steps in
    assert json.loads((out / "history.json").read_text()) == h
    assert result["model"] == out / "checkpoint.npz"
    assert VAE.load(result["model"]).n_latent == result["vae"].n_latent == 2


def test_one_progress_line_per_epoch(two_epochs):
    _, _, lines, _ = two_epochs
    progress = [line for line in lines if line.startswith("epoch ")]
    assert len(progress) == 2
    assert all("train -ELBO" in line and "test -ELBO" in line and line.endswith(" s")
               for line in progress)


def test_window_false_imports_no_gui(two_epochs):
    *_, gui = two_epochs
    assert gui == []  # and pyplot was blocked throughout, so it was never needed


def test_no_display_means_no_window_and_no_pyplot(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    assert demo.window_available() is False


def test_window_true_without_display_runs_headless(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    stale = tmp_path / "frames" / "epoch_07.png"  # left by an earlier, longer run
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    result, _, gui = run_headless(monkeypatch, epochs=1, out=tmp_path, train_size=100)
    assert gui == []
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["epoch_01.png"]
    with Image.open(result["gif"]) as gif:
        assert gif.n_frames == 1


def test_history_equals_numpyvae_train(tmp_path):
    """The demo is `numpyvae train --latent 2 --test-size N_TEST`: same steps, same numbers."""
    result = demo.run_demo(epochs=1, out=tmp_path / "demo", train_size=200, window=False,
                           log=lambda line: None)
    trainer = Trainer(VAEConfig(n_latent=2, seed=0),
                      TrainConfig(epochs=1, train_size=200, test_size=demo.N_TEST, seed=0,
                                  figures=False, progress=False),
                      tmp_path / "train", log=lambda line: None)
    trainer.run()
    for key, values in result["history"].items():
        if key != "seconds":
            assert values == trainer.history[key], key
    np.testing.assert_array_equal(result["vae"].params.flat, trainer.vae.params.flat)


def test_running_again_replaces_the_earlier_demo(tmp_path):
    """A lecturer runs the demo twice into the same directory: the second run starts afresh
    (no "checkpoint exists" refusal) and its files describe the second run only."""
    for epochs in (2, 1):
        result = demo.run_demo(epochs=epochs, out=tmp_path, train_size=100, window=False,
                               log=lambda line: None)
    assert result["history"]["epoch"] == [1]
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [1]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["epoch_01.png"]
    assert VAE.load(tmp_path / "checkpoint.npz").optimizer.t == 1


def test_gif_failure_keeps_frames(tmp_path, monkeypatch):
    def broken(frames, path):
        raise OSError("disk full")

    monkeypatch.setattr(demo, "assemble_gif", broken)
    lines: list[str] = []
    result = demo.run_demo(epochs=1, out=tmp_path, train_size=100, window=False,
                           log=lines.append)
    assert result["gif"] is None and not (tmp_path / "latent.gif").exists()
    assert result["frames"][0].exists()
    assert any("could not write" in line and "disk full" in line for line in lines)


def test_assemble_gif_pads_frames_of_another_size(tmp_path):
    frames = []
    for k, size in enumerate([(60, 30), (40, 40)]):  # a window resized between epochs
        frames.append(tmp_path / f"f{k}.png")
        Image.new("RGB", size, (255, 40 * k, 0)).save(frames[-1])
    gif = demo.assemble_gif(frames, tmp_path / "a.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 2 and im.size == (60, 30)


def test_grid_z_rows_start_at_the_top():
    z = demo.grid_z()
    assert z.shape == (demo.N_GRID**2, 2)
    np.testing.assert_allclose(z[0], [-demo.SPAN, demo.SPAN])  # top left: z1 low, z2 high
    np.testing.assert_allclose(z[demo.N_GRID - 1], [demo.SPAN, demo.SPAN])  # top right
    np.testing.assert_allclose(z[-1], [demo.SPAN, -demo.SPAN])  # bottom right


def test_rejects_a_non_positive_train_size(tmp_path):
    with pytest.raises(ValueError, match="epochs and train_size must be >= 1"):
        demo.run_demo(epochs=1, out=Path(tmp_path), train_size=0, window=False)
