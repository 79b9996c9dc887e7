"""The shipped models: listed, loaded offline through the checkpoint reader, checksummed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import numpyvae
from numpyvae import pretrained
from numpyvae.checkpoint import read_checkpoint
from numpyvae.errors import CheckpointError


def test_list_pretrained_names_each_model_with_a_description():
    names = numpyvae.list_pretrained()
    assert {"mnist-z20", "mnist-z2", "frey-z2"} <= set(names)
    assert all(isinstance(d, str) and d for d in names.values())


@pytest.mark.parametrize("name", ["mnist-z20", "mnist-z2", "frey-z2"])
def test_manifest_matches_the_shipped_file(name):
    """SHA-256, size, parameters only, float32, and the numbers measured beside them."""
    entry = pretrained.manifest()[name]
    path = pretrained.HERE / entry["file"]
    assert pretrained.sha256_of(path) == entry["sha256"]
    assert path.stat().st_size == entry["bytes"] < 6_000_000
    ck = read_checkpoint(path)
    assert ck.optimizer is None and ck.rng is None  # parameters only
    assert ck.config.dtype == "float32"
    assert entry["command"].startswith("numpyvae train") and entry["seed"] == 0
    assert len(entry["trained_at_commit"]) == 40
    assert np.isfinite(entry["test"]["neg_elbo"])


def test_mnist_z2_gives_clustered_codes():
    """load_pretrained("mnist-z2").transform(test images): each digit's codes sit together
    (the mean distance to the own class centre is well below that to the other centres)."""
    vae = numpyvae.load_pretrained("mnist-z2")
    assert vae.n_latent == 2
    images, labels = numpyvae.load_mnist("test")
    mu = vae.transform(images[:2000] / 255)
    y = labels[:2000]
    centres = np.stack([mu[y == c].mean(axis=0) for c in range(10)])
    d = np.linalg.norm(mu[:, None, :] - centres[None], axis=2)  # (N, 10)
    own = d[np.arange(len(y)), y].mean()
    other = (d.sum(axis=1) - d[np.arange(len(y)), y]).mean() / 9
    assert own < 0.6 * other


def test_mnist_z20_reproduces_its_measured_test_elbo():
    """The shipped weights give the manifest's test -ELBO (same binarisation and noise seed)."""
    from numpyvae.config import TrainConfig
    from numpyvae.runs import RunData

    entry = pretrained.manifest()["mnist-z20"]
    vae = numpyvae.load_pretrained("mnist-z20")
    data = RunData.prepare(TrainConfig(), "bernoulli")
    recon, kl = vae.elbo_terms(data.test_x, rng=np.random.default_rng(entry["test"]["eval_seed"]))
    assert float(np.mean(recon + kl)) == pytest.approx(entry["test"]["neg_elbo"], abs=0.01)


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="no shipped model named 'mnist-z3'.*mnist-z20"):
        numpyvae.load_pretrained("mnist-z3")


def test_altered_file_is_a_checksum_error_naming_it(tmp_path, monkeypatch):
    for f in pretrained.HERE.iterdir():
        if f.suffix in (".json", ".npz"):
            shutil.copy(f, tmp_path / f.name)
    data = bytearray((tmp_path / "frey-z2.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "frey-z2.npz").write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    monkeypatch.setattr(pretrained, "MANIFEST", tmp_path / "manifest.json")
    with pytest.raises(CheckpointError, match="frey-z2.npz: SHA-256"):
        pretrained.load_pretrained("frey-z2")
    numpyvae.load_pretrained("mnist-z2")  # the package's own copy is untouched
    (tmp_path / "mnist-z2.npz").unlink()
    with pytest.raises(FileNotFoundError, match="mnist-z2.npz is missing"):
        pretrained.load_pretrained("mnist-z2")
    assert json.loads((tmp_path / "manifest.json").read_text())["models"]


@pytest.mark.parametrize("name", ["mnist-z20", "mnist-z2", "frey-z2"])
def test_history_of_the_run_that_made_each_model(name):
    """Its last epoch is the model's epoch count and its test -ELBO that of the run."""
    h = pretrained.history(name)
    entry = pretrained.manifest()[name]
    assert h["epoch"][-1] == entry["epochs"] == len(h["test_loss"])
    assert sum(h["seconds"]) == pytest.approx(entry["train_seconds"], abs=0.1)
    with pytest.raises(ValueError, match="no shipped model"):
        pretrained.history("nope")


def test_frey_z2_is_the_honest_model_and_reproduces_its_numbers():
    """(GAU-7) (GAU-8) the shipped Frey model has the variance floor, was trained and measured
    on dequantised pixels with the block split, and its weights give the manifest's test -ELBO,
    whose discrete version is that plus D log 256, below 8 bits/dim."""
    from numpyvae.config import VAR_FLOOR_8BIT, TrainConfig
    from numpyvae.evaluate import bits_per_dim, discrete_nats
    from numpyvae.runs import RunData

    entry = pretrained.manifest()["frey-z2"]
    t = entry["test"]
    assert "--dequantize" in entry["command"] and t["dequantized"] and t["split"] == "blocks"
    vae = numpyvae.load_pretrained("frey-z2")
    assert vae.config.decoder_var_floor == VAR_FLOOR_8BIT
    data = RunData.prepare(TrainConfig(dataset="frey"), "gaussian")
    assert data.dequantize and t["examples"] == len(data.test_x) == 200
    recon, kl = vae.elbo_terms(data.test_x, rng=np.random.default_rng(t["eval_seed"]))
    neg_elbo = float(np.mean(recon + kl))
    assert neg_elbo == pytest.approx(t["neg_elbo"], abs=0.01)
    assert t["discrete_neg_elbo"] == pytest.approx(discrete_nats(neg_elbo, 560), abs=0.01)
    assert t["discrete_neg_elbo_bits_per_dim"] == pytest.approx(
        bits_per_dim(t["discrete_neg_elbo"], 560), abs=1e-4)
    assert 0 < t["discrete_neg_log_likelihood_iw_bits_per_dim"] \
        <= t["discrete_neg_elbo_bits_per_dim"] < 8
