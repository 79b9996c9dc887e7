"""The lecture demo, headless: frames, GIF, history, no GUI imports, same numbers as train."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from numpyvae import cli, data, demo, demo_window
from numpyvae.demo_figure import DemoFigure
from numpyvae.model import VAE, VAEConfig
from numpyvae.runs import open_run
from numpyvae.training import TrainConfig, Trainer, TrainingInterrupted

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
    assert [f.name for f in frames] == ["epoch_00.png", "epoch_01.png", "epoch_02.png"]
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
        assert gif.n_frames == 3  # the untrained model, then one per epoch
        assert gif.size == FRAME_PIXELS
    assert any("latent.gif (3 frames)" in line for line in lines)


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
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["epoch_00.png",
                                                                         "epoch_01.png"]
    with Image.open(result["gif"]) as gif:
        assert gif.n_frames == 2


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
        if key not in ("seconds", "cpu_seconds"):
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
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["epoch_00.png",
                                                                         "epoch_01.png"]
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
    with pytest.raises(ValueError, match="train_size must be >= 1"):
        demo.run_demo(epochs=1, out=Path(tmp_path), train_size=0, window=False)


# --------------------------------------------------------------------------- lecture features
def test_epoch_zero_frame_shows_the_untrained_model(two_epochs):
    out, result, lines, _ = two_epochs
    first = out / "frames" / "epoch_00.png"
    assert result["frames"][0] == first and result["first_frame_seconds"] > 0
    assert any(line.startswith("first frame after") for line in lines)
    with Image.open(first) as im0, Image.open(out / "frames" / "epoch_01.png") as im1:
        assert im0.size == FRAME_PIXELS
        assert np.asarray(im0).tobytes() != np.asarray(im1).tobytes()


def _step_that(action, at_call: int, monkeypatch):
    """Make VAE.step run ``action()`` on its ``at_call``-th call (1-based), as a lecturer's
    Ctrl-C or key press would arrive between two steps."""
    original, calls = VAE.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        result = original(self, *args, **kwargs)
        if len(calls) == at_call:
            action()
        return result

    monkeypatch.setattr(VAE, "step", step)
    return calls


def test_ctrl_c_still_writes_the_gif_and_a_checkpoint(tmp_path, monkeypatch):
    """SIGINT in epoch 2 (train_size 200: 2 steps per epoch, so on step 3): the trainer saves a
    checkpoint and raises TrainingInterrupted; the frames so far still become the GIF."""
    _step_that(lambda: os.kill(os.getpid(), signal.SIGINT), 3, monkeypatch)
    lines: list[str] = []
    with pytest.raises(TrainingInterrupted) as stop:
        demo.run_demo(epochs=3, out=tmp_path, train_size=200, window=False, log=lines.append)
    assert stop.value.checkpoint == tmp_path / "checkpoint.npz"
    with Image.open(tmp_path / "latent.gif") as gif:
        assert gif.n_frames == 2  # epoch 0 and epoch 1
    assert any("latent.gif (2 frames)" in line for line in lines)
    run = open_run(tmp_path)
    assert (run.epoch, run.step) == (1, 1)


def test_a_second_ctrl_c_still_writes_the_gif(tmp_path, monkeypatch):
    def second_ctrl_c():
        raise KeyboardInterrupt  # what Trainer's handler raises on a second SIGINT

    _step_that(second_ctrl_c, 1, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(epochs=2, out=tmp_path, train_size=200, window=False,
                      log=lambda line: None)
    with Image.open(tmp_path / "latent.gif") as gif:
        assert gif.n_frames == 1  # the untrained frame


def test_replay_without_frames_says_what_it_expected(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"frames/epoch_\*\.png.*numpyvae demo --out"):
        demo.replay_run(tmp_path, window=False)
    assert cli.main(["demo", "--replay", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("numpyvae: error: nothing to replay")
    assert "does not exist" in err[0]


def test_replay_headless_says_what_it_would_play(two_epochs, monkeypatch):
    out, *_ = two_epochs
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    lines: list[str] = []
    frames = demo.replay_run(out, window=False, log=lines.append)
    assert [f.name for f in frames] == ["epoch_00.png", "epoch_01.png", "epoch_02.png"]
    assert "would play 3 frames" in lines[0] and "epoch_00.png to epoch_02.png" in lines[0]


def test_start_from_a_trained_model(two_epochs, tmp_path):
    _, trained, _, _ = two_epochs
    start = trained["vae"]
    before = start.params.flat.copy()
    result = demo.run_demo(epochs=1, out=tmp_path, train_size=200, window=False,
                           start_from=start, start_name="test model", log=lambda line: None)
    np.testing.assert_array_equal(start.params.flat, before)  # a copy was trained
    assert result["vae"] is not start
    assert result["history"]["epoch"] == [1]
    fresh = demo.run_demo(epochs=1, out=tmp_path / "fresh", train_size=200, window=False,
                          log=lambda line: None)
    assert result["history"]["test_loss"][0] < fresh["history"]["test_loss"][0]


def test_explore_only_needs_a_start_model(two_epochs, tmp_path):
    with pytest.raises(ValueError, match="or 0 with a model to start from"):
        demo.run_demo(epochs=0, out=tmp_path, window=False)
    result = demo.run_demo(epochs=0, out=tmp_path, train_size=100, window=False,
                           start_from=two_epochs[1]["vae"], log=lambda line: None)
    assert [f.name for f in result["frames"]] == ["epoch_00.png"]
    assert result["history"] == {} and not (tmp_path / "checkpoint.npz").exists()


def test_beta_reaches_the_training_config(tmp_path):
    result = demo.run_demo(epochs=1, out=tmp_path, train_size=100, window=False, beta=4.0,
                           log=lambda line: None)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["beta"] == 4.0
    assert result["history"]["beta"] == [4.0]


def test_cli_flags_reach_run_demo(monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.update(kwargs))
    assert cli.main(["demo", "--beta", "4", "--dataset", "fashion-mnist", "--no-window"]) == 0
    assert (seen["beta"], seen["dataset"], seen["epochs"], seen["window"]) == (
        4.0, "fashion-mnist", 10, False)
    assert seen["start_from"] is None


def test_pretrained_is_loaded_lazily_and_explores_by_default(monkeypatch):
    model = VAE(n_input=784, hidden=(8,), n_latent=2)
    fake = types.ModuleType("numpyvae.pretrained")
    fake.load_pretrained = lambda name, backend=None: model if name == "mnist-z2" else None
    monkeypatch.setitem(sys.modules, "numpyvae.pretrained", fake)
    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.update(kwargs))
    assert cli.main(["demo", "--pretrained"]) == 0
    assert seen["start_from"] is model and seen["epochs"] == 0


def test_pretrained_fashion_mnist_is_a_clear_error(capsys):
    assert cli.main(["demo", "--pretrained", "--dataset", "fashion-mnist"]) == 2
    assert "no shipped Fashion-MNIST 2-D model" in capsys.readouterr().err


def test_fashion_mnist_uses_its_class_names(tmp_path, monkeypatch):
    """Fashion-MNIST is not on this machine: stand MNIST's arrays in under its name."""
    mnist = data.load_dataset("mnist")
    fake = data.Dataset("fashion-mnist", mnist.train_images[:300], mnist.train_labels[:300],
                        mnist.test_images[:N_TEST], mnist.test_labels[:N_TEST], (28, 28),
                        data.FASHION_MNIST_CLASSES, "bernoulli")
    real = data.load_dataset
    monkeypatch.setattr(data, "load_dataset",
                        lambda name, **kw: fake if name == "fashion-mnist" else real(name, **kw))
    lines: list[str] = []
    demo.run_demo(epochs=1, out=tmp_path, train_size=100, window=False, dataset="fashion-mnist",
                  log=lines.append)
    assert "Fashion-MNIST training images" in lines[0]
    assert json.loads((tmp_path / "config.json").read_text())["train"]["dataset"] == \
        "fashion-mnist"


@pytest.mark.parametrize("names", [tuple(str(d) for d in range(10)),
                                   data.FASHION_MNIST_CLASSES])
def test_figure_is_1280x720_and_nothing_overlaps(names):
    fig = Figure(figsize=demo.FIGSIZE)
    view = DemoFigure(fig, np.arange(50) % 10, names, 10, footer=demo_window.KEYS, beta=4.0)
    view.update(np.zeros((50, 2)), np.zeros((demo.N_GRID**2, 784)), "2-D VAE on MNIST · "
                "epoch 10/10 · test −ELBO 157.8 nats (KL 5.0) · β = 4")
    view.update_loss({"epoch": [1, 2], "train_loss": [210.0, 190.0],
                      "test_loss": [188.0, 177.0]})
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    assert canvas.get_width_height() == (1280, 720)
    renderer = canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]  # with ticks, labels, legend
    boxes += [t.get_window_extent(renderer) for t in (view.title, view.footer)]
    for box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= 1280 and box.y1 <= 720, box
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_loss_panel_draws_the_history(two_epochs):
    _, result, _, _ = two_epochs
    view = DemoFigure(Figure(figsize=demo.FIGSIZE), None, None, 2)
    view.update_loss(result["history"])
    np.testing.assert_array_equal(view.train_line.get_xdata(), [1, 2])
    np.testing.assert_array_equal(view.train_line.get_ydata(), result["history"]["train_loss"])
    np.testing.assert_array_equal(view.test_line.get_ydata(), result["history"]["test_loss"])
    lo, hi = view.ax_loss.get_ylim()
    assert lo < min(result["history"]["test_loss"]) and hi > max(result["history"]["train_loss"])


# --------------------------------------------------------------------------- the window's keys
@pytest.fixture
def agg_window(monkeypatch):
    """A 'live window' on the Agg canvas: pyplot without a screen, events sent by hand."""
    import matplotlib.pyplot as plt

    monkeypatch.setattr(demo, "window_available", lambda: True)
    yield plt
    plt.close("all")


def _press(plt, key: str) -> None:
    from matplotlib.backend_bases import KeyEvent

    KeyEvent("key_press_event", plt.figure("numpyvae demo").canvas, key)._process()


def test_q_stops_cleanly(agg_window, tmp_path, monkeypatch):
    plt = agg_window
    _step_that(lambda: _press(plt, "q"), 3, monkeypatch)
    lines: list[str] = []
    result = demo.run_demo(epochs=3, out=tmp_path, train_size=200, log=lines.append)
    assert result["stopped"] == "q pressed"
    run = open_run(tmp_path)
    assert (run.epoch, run.step) == (1, 1)  # trainer.save() after the step q arrived in
    with Image.open(result["gif"]) as gif:
        assert gif.n_frames == 2
    assert not plt.get_fignums()  # the window was closed
    assert any("stopped (q pressed)" in line for line in lines)


def test_closing_the_window_stops_and_writes_the_gif(agg_window, tmp_path, monkeypatch):
    plt = agg_window
    _step_that(lambda: plt.close("numpyvae demo"), 1, monkeypatch)
    result = demo.run_demo(epochs=2, out=tmp_path, train_size=200, log=lambda line: None)
    assert result["stopped"] == "window closed"
    with Image.open(result["gif"]) as gif:
        assert gif.n_frames == 1


def test_space_pauses_until_space_again(agg_window, tmp_path, monkeypatch):
    """Space between steps 1 and 2: training waits in the GUI event loop (here counted) until
    the second space, then finishes as if never paused."""
    plt = agg_window
    _step_that(lambda: _press(plt, " "), 1, monkeypatch)
    waits = []

    def event_loop(self, timeout=0):
        if timeout < 0.01:  # plt.pause's, when a frame is shown
            return
        waits.append(timeout)
        if len(waits) == 3:
            _press(plt, " ")

    monkeypatch.setattr(type(plt.figure("numpyvae demo").canvas), "start_event_loop",
                        event_loop)
    plt.close("all")
    result = demo.run_demo(epochs=1, out=tmp_path, train_size=200, log=lambda line: None)
    assert len(waits) == 3 and result["stopped"] is None
    assert result["history"]["epoch"] == [1]


def test_demo_trains_the_iwae_objective(two_epochs, tmp_path):
    """--objective iwae --k 3 reaches the trainer (a fresh model, and a start model whose weights
    carry over) and the loss panel names what the train curve is."""
    result = demo.run_demo(epochs=1, out=tmp_path / "new", train_size=100, window=False,
                           objective="iwae", k=3, log=lambda line: None)
    cfg = json.loads((tmp_path / "new" / "config.json").read_text())["model"]
    assert (cfg["objective"], cfg["k"]) == ("iwae", 3)
    assert result["vae"].config.objective == "iwae"
    start = two_epochs[1]["vae"]
    again = demo.run_demo(epochs=0, out=tmp_path / "start", train_size=100, window=False,
                          start_from=start, objective="iwae", k=3, log=lambda line: None)
    np.testing.assert_array_equal(again["vae"].params.flat, start.params.flat)
    assert (again["vae"].config.objective, again["vae"].config.k) == ("iwae", 3)
    fig = DemoFigure(Figure(figsize=demo.FIGSIZE), None, None, 2, train_label="train −L₃")
    assert [t.get_text() for t in fig.ax_loss.get_legend().get_texts()][0] == "train −L₃"


def test_cli_objective_flags_reach_run_demo(monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.update(kwargs))
    assert cli.main(["demo", "--objective", "iwae", "--k", "5", "--no-window"]) == 0
    assert (seen["objective"], seen["k"]) == ("iwae", 5)
