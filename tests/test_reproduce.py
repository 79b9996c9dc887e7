"""``numpyvae reproduce``: the seed post's two models and its three figures, resumable."""

from __future__ import annotations

from numpyvae.cli import main
from numpyvae.model import VAE


def test_reproduce_trains_both_models_and_gathers_the_posts_figures(tmp_path, capsys):
    argv = ["reproduce", "--out", str(tmp_path), "--epochs", "1", "--train-size", "300",
            "--test-size", "200", "--no-progress"]
    assert main(argv) == 0
    for name in ("mnist-z20-reconstruction", "mnist-z2-latent_scatter", "mnist-z2-manifold"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    assert VAE.load(tmp_path / "mnist-z20" / "checkpoint.npz").n_latent == 20
    z2 = VAE.load(tmp_path / "mnist-z2" / "checkpoint.npz")
    assert z2.n_latent == 2 and z2.optimizer.t == 3  # 300 images, batch 100, 1 epoch
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0  # finished models are kept, not retrained
    out = capsys.readouterr().out
    assert "mnist-z20: finished earlier, kept" in out and "mnist-z2: finished earlier" in out
    assert main(argv) == 2  # without --resume an existing run is not overwritten
    assert "--resume" in capsys.readouterr().err
