"""Trained models shipped inside the package: ready in seconds, offline.

>>> from numpyvae import list_pretrained, load_pretrained
>>> list_pretrained()                       # name -> one-line description
>>> vae = load_pretrained("mnist-z2")       # the seed's 2-D model, 75 epochs
>>> mu = vae.transform(test_images / 255)   # clustered 2-D codes

Each model is a parameters-only checkpoint (no optimiser state), float32, made by the project's
own ``numpyvae train`` command, with the per-epoch history of that run (``history(name)``).
``manifest.json`` beside the files holds, for each, the exact command, the seed, the commit it
was trained at, the file's SHA-256, its size and the measured test numbers;
``scripts/make_pretrained.py`` reproduces all of them. Loading checks the SHA-256 first, then
reads the file with the same no-pickle checkpoint reader as every other checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path

from ..checkpoint import read_checkpoint
from ..config import default_backend
from ..errors import CheckpointError
from ..model import VAE

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"


def manifest() -> dict[str, dict]:
    """name -> the manifest entry (file, description, command, seed, commit, sha256, numbers)."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["models"]


def list_pretrained() -> dict[str, str]:
    """name -> one-line description of every shipped model."""
    return {name: entry["description"] for name, entry in manifest().items()}


def history(name: str) -> dict[str, list[float]]:
    """The per-epoch history (train/test -ELBO, recon, KL, beta, seconds) of the run that made
    the shipped model ``name``: ``NAME-history.csv`` beside it (no parameters, plain text)."""
    if name not in manifest():
        raise ValueError(f"no shipped model named {name!r}; the shipped models are: "
                         + ", ".join(manifest()))
    with open(HERE / f"{name}-history.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = {k: [float(r[k]) for r in rows] for k in rows[0]}
    out["epoch"] = [int(e) for e in out["epoch"]]
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pretrained(name: str, backend: str | None = None) -> VAE:
    """The shipped model ``name`` as a ``VAE`` (backend: the package default unless given)."""
    models = manifest()
    if name not in models:
        raise ValueError(f"no shipped model named {name!r}; the shipped models are: "
                         + ", ".join(f"{n} ({e['description']})" for n, e in models.items()))
    entry = models[name]
    path = HERE / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from this installation of numpyvae; "
                                "reinstall it, or remake it with scripts/make_pretrained.py")
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{path}: SHA-256 {digest[:16]}… does not match the manifest's "
                              f"{entry['sha256'][:16]}…: the file was altered or damaged; "
                              "reinstall numpyvae or remake it with scripts/make_pretrained.py")
    ck = read_checkpoint(path)
    ck.config = dataclasses.replace(ck.config, backend=backend or default_backend())
    return VAE.from_checkpoint(ck, source=path)


__all__ = ["history", "list_pretrained", "load_pretrained", "manifest"]
