"""Checkpoints: the file format only. One ``.npz`` holding config, parameters and, optionally,
optimiser state, RNG state and training progress; no model inside (``VAE.load`` assembles one).
A file with parameters alone is a model for use, not for resuming (the shipped models).

Written atomically (``numpyvae.atomic``), so a crash or SIGKILL during a save leaves the
previous checkpoint intact.
Loaded as untrusted input: never unpickled (``allow_pickle=False``), every array's header is
checked against the shapes the stored config implies before it is read, a SHA-256 of the
payload is verified, and every failure becomes a ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .atomic import atomic_write
from .config import VAEConfig
from .errors import CheckpointError
from .layers import layout

FORMAT = "numpyvae-checkpoint"
VERSION = 1
_MAX_JSON = 1 << 22  # 4 MiB of metadata is far more than any real checkpoint holds


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _text(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), dtype=np.uint8)


@dataclasses.dataclass
class Checkpoint:
    """The verified contents of a checkpoint file."""

    config: VAEConfig
    params: np.ndarray  # every parameter, in ``layers.layout(config)`` order, each in C order
    # (``params.Parameters.to_canonical``: the heads' side-by-side block is not in the file)
    optimizer: dict[str, np.ndarray] | None  # {"t"} (SGD) or {"t", "m", "v"} (Adam); None: absent
    rng: dict | None  # the model generator's bit_generator.state; None: absent
    train_state: dict  # the training loop's position and history ({} for a bare model)


def write_checkpoint(path, config: VAEConfig, params: np.ndarray, *,
                     optimizer: dict[str, np.ndarray] | None = None, rng: dict | None = None,
                     train_state: dict | None = None) -> Path:
    """Write a checkpoint to ``path`` atomically. ``optimizer=None`` writes parameters only."""
    path = Path(path)
    arrays = {"params": np.ascontiguousarray(params)}
    if optimizer is not None:
        arrays["opt_t"] = np.asarray(optimizer["t"], dtype=np.int64)
        if "m" in optimizer:
            arrays.update(opt_m=optimizer["m"], opt_v=optimizer["v"])
    meta = {
        "format": FORMAT, "version": VERSION, "config": config.to_dict(),
        "optimizer_state": optimizer is not None, "rng": rng,
        "train_state": train_state or {}, "sha256": _digest(arrays),
    }
    with atomic_write(path) as f:
        np.savez(f, meta=_text(meta), **arrays)
    return path


def _read_member(zf: zipfile.ZipFile, name: str, dtype, shape) -> np.ndarray:
    """Read one .npy member after checking its header against the expected dtype and shape."""
    if f"{name}.npy" not in zf.namelist():
        raise ValueError(f"missing array {name!r}")
    with zf.open(f"{name}.npy") as f:
        version = npy_format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"array {name!r} has unknown .npy version {version}")
        read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                       else npy_format.read_array_header_2_0)
        got_shape, fortran, got_dtype = read_header(f, max_header_size=10_000)
        if got_dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects; refusing to unpickle")
        if (dtype is not None and got_dtype != np.dtype(dtype)) or (
            shape is not None and tuple(got_shape) != tuple(shape)):
            raise ValueError(f"array {name!r} is {got_dtype}{list(got_shape)}, expected "
                             f"{np.dtype(dtype) if dtype else 'any'}{list(shape or [])}")
        count = int(np.prod(got_shape))
        if count * got_dtype.itemsize > _MAX_JSON and shape is None:
            raise ValueError(f"array {name!r} is implausibly large")
        data = f.read(count * got_dtype.itemsize + 1)
    if len(data) != count * got_dtype.itemsize:
        raise ValueError(f"array {name!r} has {len(data)} bytes, its header says "
                         f"{count * got_dtype.itemsize}")
    return np.frombuffer(data, dtype=got_dtype).reshape(got_shape, order="F" if fortran else "C")


def read_checkpoint(path) -> Checkpoint:
    """Parse and verify a checkpoint; any defect is a ``CheckpointError`` naming the file."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            meta_raw = _read_member(zf, "meta", np.uint8, None)
            meta = json.loads(meta_raw.tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("not a numpyvae checkpoint (no numpyvae header)")
            if meta.get("version") != VERSION:
                raise ValueError(f"format version {meta.get('version')!r}; this numpyvae reads "
                                 f"version {VERSION} (upgrade numpyvae or retrain)")
            cfg = VAEConfig.from_dict(meta["config"])
            n = layout(cfg).size
            arrays = {"params": _read_member(zf, "params", cfg.dtype, (n,))}
            has_opt = meta.get("optimizer_state", True)  # files before 0.2 always had it
            if has_opt:
                arrays["opt_t"] = _read_member(zf, "opt_t", np.int64, ())
                if cfg.optimizer == "adam":
                    arrays["opt_m"] = _read_member(zf, "opt_m", cfg.dtype, (n,))
                    arrays["opt_v"] = _read_member(zf, "opt_v", cfg.dtype, (n,))
            rng_state, train_state = meta.get("rng"), meta.get("train_state", {})
            if not isinstance(rng_state, dict | None) or not isinstance(train_state, dict):
                raise ValueError("RNG or training state is not a mapping")
    except CheckpointError:
        raise
    except (OSError, EOFError) as e:
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}") from e
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e}); it may be "
                              "truncated or from an interrupted copy: use an earlier one") from e
    except Exception as e:  # untrusted bytes: any parse failure is a bad checkpoint
        raise CheckpointError(f"{path}: not a valid numpyvae checkpoint ({e})") from e
    if meta.get("sha256") != _digest(arrays):
        raise CheckpointError(f"{path}: checksum mismatch: the file was corrupted after it was "
                              "written; use an earlier checkpoint")
    if not np.all(np.isfinite(arrays["params"])):
        raise CheckpointError(f"{path}: parameters contain NaN or inf")
    opt = None
    if "opt_t" in arrays:
        opt = {"t": arrays["opt_t"]}
        if "opt_m" in arrays:
            opt.update(m=arrays["opt_m"], v=arrays["opt_v"])
    return Checkpoint(cfg, arrays["params"], opt, rng_state, train_state)
