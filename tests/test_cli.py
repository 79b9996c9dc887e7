"""The command line: every user mistake is one clear line and status 2; the commands work."""

import json
import subprocess
import sys

import pytest

from numpyvae.cli import main

TINY = ["--hidden", "16", "--latent", "2", "--epochs", "1", "--batch-size", "100",
        "--train-size", "500", "--test-size", "100", "--no-progress"]


def test_train_evaluate_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["interpolation.png", "latent_scatter.png", "learning_curves.png",
                       "manifold.png", "manifold_ppf.png", "reconstruction.png", "samples.png"]
    assert main(["evaluate", str(out), "--k", "20", "--test-size", "50"]) == 0
    text = capsys.readouterr().out
    assert "importance-weighted, k=20" in text
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["neg_log_likelihood_iw"] <= ev["neg_elbo"] + 1.0 and ev["n_examples"] == 50
    (out / "figures" / "samples.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "figures" / "samples.png").exists()


def test_gradcheck_command(capsys):
    assert main(["gradcheck", "--decoder", "gaussian", "--activation", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "dec.logvar.W" in out and "all gradients pass" in out and "FAIL" not in out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "/nonexistent/run"], "no run at /nonexistent/run"),
    (["plot", "/nonexistent/run"], "no run at /nonexistent/run"),
    (["train", "--resume"], "--resume needs --out"),
    (["train", "--dataset", "frey", "--binarize", "dynamic", "--epochs", "1"],
     "needs --binarize none"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unreadable_checkpoint_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    assert main(["evaluate", str(tmp_path / "bad.npz")]) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_debug_shows_the_traceback():
    with pytest.raises(FileNotFoundError):
        main(["--debug", "evaluate", "/nonexistent/run"])


@pytest.mark.parametrize("argv", [["train", "--dataset", "cifar"], ["train", "--lr", "0"],
                                  ["train", "--binarize", "maybe"], ["train", "--epochs", "x"],
                                  ["frobnicate"]])
def test_bad_flags_print_usage_and_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "numpyvae", *argv], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: numpyvae" in proc.stderr and "Traceback" not in proc.stderr


def test_exercises_command_is_wired(tmp_path, capsys):
    """``numpyvae exercises start/check``: a fresh workspace reports every row not started."""
    assert main(["exercises", "start", str(tmp_path / "course")]) == 0
    assert (tmp_path / "course" / "vae_ops.py").exists()
    main(["exercises", "check", str(tmp_path / "course"), "--only", "KL-3"])
    out = capsys.readouterr().out
    assert "KL-3" in out and "not started" in out and "Traceback" not in out


def test_train_objective_flags_and_resume_refusal(tmp_path, capsys):
    """numpyvae train --objective iwae --k 3 trains on L_3 (the checkpoint says so); resuming it
    with --objective elbo is refused with the fix, and with no flags it continues."""
    from numpyvae.model import VAE

    out = tmp_path / "run"
    base = ["train", "--hidden", "16", "--latent", "2", "--train-size", "200", "--test-size",
            "50", "--batch-size", "50", "--no-figures", "--no-progress", "--out", str(out)]
    assert main([*base, "--epochs", "1", "--objective", "iwae", "--k", "3"]) == 0
    assert (VAE.load(out / "checkpoint.npz").config.objective,
            VAE.load(out / "checkpoint.npz").config.k) == ("iwae", 3)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--objective",
                 "elbo"]) == 2
    err = capsys.readouterr().err
    assert "objective='iwae'" in err and "Fix" in err and "--objective iwae" in err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2]
