"""Checkpoints: exact round trip, atomic writes, and a loader that treats files as untrusted."""

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpyvae import VAE
from numpyvae.checkpoint import read_checkpoint
from numpyvae.errors import CheckpointError
from numpyvae.model import load_checkpoint, save_checkpoint


def trained(seed=1, **kw):
    vae = VAE(n_input=12, hidden=(6,), n_latent=2, seed=seed, backend="numpy", **kw)
    X = np.random.default_rng(0).random((5, 12)).astype(np.float32)
    for _ in range(3):
        vae.partial_fit(X)
    return vae, X


def test_round_trip_continues_identically(tmp_path):
    """Parameters, Adam moments, step count and the RNG state all survive the round trip."""
    vae, X = trained()
    save_checkpoint(tmp_path / "c.npz", vae, {"epoch": 3, "history": {"a": [1.0]}})
    other, state = load_checkpoint(tmp_path / "c.npz")
    assert state == {"epoch": 3, "history": {"a": [1.0]}}
    assert other.config == vae.config and other.optimizer.t == 3
    for _ in range(2):  # same noise draws, same updates: bitwise the same model
        assert vae.partial_fit(X) == other.partial_fit(X)
    np.testing.assert_array_equal(vae.params.flat, other.params.flat)


def test_vae_save_and_load(tmp_path):
    vae, X = trained(decoder="gaussian", dtype="float64")
    vae.save(tmp_path / "m.npz")
    other = VAE.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(other.transform(X), vae.transform(X))
    assert other.params.flat.dtype == np.float64


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """A save that fails half way leaves the previous checkpoint intact and no temp file."""
    vae, _ = trained()
    path = save_checkpoint(tmp_path / "c.npz", vae)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    vae.partial_fit(np.zeros((2, 12), np.float32))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, vae)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_truncated_checkpoint(tmp_path):
    vae, _ = trained()
    path = save_checkpoint(tmp_path / "c.npz", vae)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_corrupted_payload_is_detected(tmp_path):
    """A flipped byte inside the parameters: caught by the zip CRC or our SHA-256."""
    vae, _ = trained()
    path = save_checkpoint(tmp_path / "c.npz", vae)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("params.npy")
    data[info.header_offset + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.npz"):
        load_checkpoint(path)


def test_foreign_npz_and_pickles_are_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with pytest.raises(CheckpointError, match="not a valid numpyvae checkpoint"):
        load_checkpoint(tmp_path / "foreign.npz")
    np.savez(tmp_path / "pickle.npz", meta=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "pickle.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="text.npz"):
        load_checkpoint(tmp_path / "text.npz")


def rewrite_meta(path, change):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
    change(meta)
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    members["meta.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)


def test_unknown_format_version(tmp_path):
    vae, _ = trained()
    path = save_checkpoint(tmp_path / "c.npz", vae)
    rewrite_meta(path, lambda m: m.update(version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(path)


def test_checkpoint_of_another_architecture(tmp_path):
    vae, _ = trained()
    path = save_checkpoint(tmp_path / "c.npz", vae)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_checkpoint(path, expect_config=VAE(n_input=12, hidden=(7,), n_latent=2).config)
    # a config that claims another architecture than the arrays hold
    rewrite_meta(path, lambda m: m["config"].update(hidden=[9]))
    with pytest.raises(CheckpointError, match="params"):
        read_checkpoint(path)


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.npz")


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    vae, _ = trained()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "c.npz", vae).read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_checkpoints_raise_checkpoint_error_or_load(good_bytes, tmp_path, data):
    """Random truncations and byte flips: a CheckpointError or a valid model, nothing else."""
    blob = bytearray(good_bytes)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    for _ in range(data.draw(st.integers(0, 4))):
        if blob:
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(blob))
    try:
        vae, _ = load_checkpoint(path)
    except CheckpointError:
        return
    assert np.all(np.isfinite(vae.params.flat))  # it loaded: then it must be a valid model


def test_written_files_have_ordinary_permissions(tmp_path):
    """atomic_write's temp file is 0600 (mkstemp); the result must be 0666 less the umask."""
    import os

    from numpyvae.atomic import atomic_write

    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
