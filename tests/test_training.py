"""The training loop: exact resume, determinism, divergence, and real signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from numpyvae.checkpoint import read_checkpoint
from numpyvae.errors import DivergenceError
from numpyvae.model import VAEConfig, load_checkpoint
from numpyvae.training import CHECKPOINT, TrainConfig, Trainer, TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]
MODEL = VAEConfig(hidden=(32,), n_latent=2, seed=4)


def tcfg(**kw):
    base = dict(epochs=2, batch_size=50, train_size=600, test_size=200, figures=False, seed=4,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


def run(out, epochs, resume=False, model=MODEL, **kw):
    t = Trainer(None if resume else model, tcfg(epochs=epochs, **kw), out, resume=resume,
                log=lambda line: None)
    t.run()
    return t


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def test_resume_between_epochs_is_bitwise_exact(tmp_path):
    """2 epochs straight == 1 epoch, stop, resume for 1 more: data order, binarisation draws,
    noise, Adam state, history."""
    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    np.testing.assert_array_equal(straight.vae.params.flat, resumed.vae.params.flat)
    np.testing.assert_array_equal(straight.vae.optimizer.m, resumed.vae.optimizer.m)
    def drop_time(h):
        return {k: v for k, v in h.items() if k not in ("seconds", "cpu_seconds")}

    assert drop_time(straight.history) == drop_time(resumed.history)
    assert straight.vae.optimizer.t == resumed.vae.optimizer.t == 24


@pytest.mark.parametrize("binarize", ["static", "none"])
def test_resume_for_other_binarisations(tmp_path, binarize):
    straight = run(tmp_path / "a", 2, binarize=binarize)
    run(tmp_path / "b", 1, binarize=binarize)
    resumed = run(tmp_path / "b", 2, resume=True)
    np.testing.assert_array_equal(straight.vae.params.flat, resumed.vae.params.flat)


def test_run_files(tmp_path):
    t = run(tmp_path, 2)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["epoch"] == [1, 2] and len(hist["test_loss"]) == 2
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_neg_elbo"] == pytest.approx(results["test_recon"] + results["test_kl"])
    assert json.loads((tmp_path / "config.json").read_text())["model"]["hidden"] == [32]
    assert read_checkpoint(tmp_path / CHECKPOINT).train_state["epoch"] == 2
    assert t.history["test_loss"][1] < t.history["test_loss"][0]


def test_existing_run_needs_resume(tmp_path):
    run(tmp_path, 1)
    with pytest.raises(FileExistsError, match="--resume"):
        run(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run(tmp_path / "empty", 1, resume=True)


def test_callbacks_and_overwrite(tmp_path):
    """on_step runs after every step with its index, on_epoch after every epoch with the
    history row already on disk; overwrite=True restarts a run in a used directory."""
    steps, rows = [], []

    def on_epoch(trainer, row):
        on_disk = json.loads((tmp_path / "history.json").read_text())
        rows.append((row["epoch"], on_disk["epoch"], trainer.vae.optimizer.t))

    run(tmp_path, 1)
    t = Trainer(MODEL, tcfg(epochs=2), tmp_path, log=lambda line: None, overwrite=True,
                on_step=lambda trainer, i: steps.append(i), on_epoch=on_epoch)
    t.run()
    assert steps == list(range(12)) * 2  # 600 images in batches of 50, two epochs
    assert rows == [(1, [1], 12), (2, [1, 2], 24)]
    assert load_checkpoint(tmp_path / CHECKPOINT)[0].optimizer.t == 24


def test_kl_warmup_schedule(tmp_path):
    """(ELBO-2) beta ramps linearly from 0 to beta over the warm-up epochs, then stays."""
    t = Trainer(MODEL, tcfg(beta=0.5, warmup_epochs=2), tmp_path, log=lambda line: None)
    assert t.beta_at(0, 0, 10) == 0.0
    assert t.beta_at(0, 5, 10) == pytest.approx(0.125)
    assert t.beta_at(1, 0, 10) == pytest.approx(0.25)
    assert t.beta_at(3, 0, 10) == 0.5


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # forced NaN
def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run(tmp_path, 1)
    good = (tmp_path / CHECKPOINT).read_bytes()
    t2 = Trainer(None, tcfg(epochs=3), tmp_path, resume=True, log=lambda line: None)
    t2.vae.optimizer.lr = 1e8  # a learning rate that blows the weights up
    with pytest.raises(DivergenceError, match=r"at step \d+ \(epoch 2\); last finite loss") as e:
        t2.run()
    assert "learning rate" in str(e.value) and "unchanged" in str(e.value)
    assert (tmp_path / CHECKPOINT).read_bytes() == good


FINAL_PARAMS = """
import hashlib, sys
import numpy as np
from numpyvae.model import VAEConfig
from numpyvae.training import Trainer, TrainConfig
t = Trainer(VAEConfig(hidden=(32,), n_latent=2, seed=4),
            TrainConfig(epochs=1, batch_size=50, train_size=600, test_size=200, seed=4,
                        figures=False, progress=False), sys.argv[1], log=lambda line: None)
t.run()
print(hashlib.sha256(t.vae.params.flat.tobytes()).hexdigest())
"""


def test_same_seed_same_parameters_across_processes(tmp_path):
    """Determinism: two fresh processes and this one give bitwise-identical parameters."""
    digests = {subprocess.run([sys.executable, "-c", FINAL_PARAMS, str(tmp_path / f"p{i}")],
                              capture_output=True, text=True, env=env(), check=True,
                              timeout=120).stdout.strip() for i in range(2)}
    import hashlib

    here = run(tmp_path / "here", 1)
    assert digests == {hashlib.sha256(here.vae.params.flat.tobytes()).hexdigest()}


def start_training(out: Path, epochs: int = 400) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "numpyvae", "train", "--hidden", "32", "--latent", "2",
           "--seed", "4", "--epochs", str(epochs), "--batch-size", "50", "--train-size", "600",
           "--test-size", "200", "--no-figures", "--no-progress", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())


def wait_for_epoch(proc: subprocess.Popen, n: int = 1) -> None:
    seen = 0
    while seen < n:
        line = proc.stdout.readline()
        assert line, f"training exited early: {proc.stderr.read()}"
        seen += line.startswith("epoch")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_step_saves_and_resumes_exactly(tmp_path, sig):
    """Ctrl-C / SIGTERM in a real process: clean exit with a message, a checkpoint mid-epoch,
    and resuming from it gives bitwise the run that was never stopped."""
    out = tmp_path / "run"
    proc = start_training(out)
    wait_for_epoch(proc, 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert f"{signal.Signals(sig).name} received" in err and "resume with" in err
    state = read_checkpoint(out / CHECKPOINT).train_state
    assert state["epoch"] >= 2 and state["step"] >= 1
    stop_epoch = state["epoch"]
    resumed = run(out, stop_epoch + 1, resume=True)
    straight = run(tmp_path / "straight", stop_epoch + 1)
    np.testing.assert_array_equal(resumed.vae.params.flat, straight.vae.params.flat)


SAVE_LOOP = """
import sys
from numpyvae import VAE
from numpyvae.model import save_checkpoint
vae = VAE(backend="numpy")
i = 0
while True:
    vae.params.flat[0] = i
    save_checkpoint(sys.argv[1], vae, {"i": i})
    print(i, flush=True)
    i += 1
"""


def test_sigkill_during_save_leaves_a_valid_checkpoint(tmp_path):
    """Kill -9 at arbitrary moments of a loop of 13 MB saves: the file always loads."""
    path = tmp_path / "c.npz"
    for delay in (0.0, 0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(path)], env=env(),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline()  # at least one save finished
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        vae, state = load_checkpoint(path)
        assert vae.params.flat[0] == state["i"]


def test_interrupt_in_process(tmp_path, monkeypatch):
    """The flag is honoured after the step in which the signal arrived."""
    t = Trainer(MODEL, tcfg(epochs=3), tmp_path, log=lambda line: None)
    real_step = t.vae.step
    calls = []

    def step_then_signal(x, beta):
        calls.append(1)
        out = real_step(x, beta)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(t.vae, "step", step_then_signal)
    with pytest.raises(TrainingInterrupted) as e:
        t.run()
    assert e.value.step == 5 and len(calls) == 5
    assert read_checkpoint(tmp_path / CHECKPOINT).train_state["step"] == 5
