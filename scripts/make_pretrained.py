"""Make the shipped models of ``numpyvae.pretrained``: train, export, measure, write the manifest.

    python scripts/make_pretrained.py                      # train all three (about 20 min here)
    python scripts/make_pretrained.py --runs DIR --trained-at COMMIT --skip-train
                                                           # export runs already trained

Each model is trained by the project's own command (``numpyvae train ...``, listed below and
stored in the manifest), exported as a parameters-only float32 checkpoint into
``numpyvae/pretrained/NAME.npz``, and measured on its full test set: the test -ELBO (1 z-sample,
seeded) and the importance-weighted bound -L_k. The manifest records the command, the seed, the
commit the training ran at, the SHA-256 and size of the file and those numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numpyvae.evaluate import evaluate  # noqa: E402
from numpyvae.pretrained import HERE, MANIFEST, sha256_of  # noqa: E402
from numpyvae.runs import open_run  # noqa: E402

MODELS = {  # name: (description, the arguments of `numpyvae train`)
    "mnist-z20": ("the seed's MNIST model: 784-500-500-20 softplus, Bernoulli, 75 epochs",
                  []),
    "mnist-z2": ("the seed's 2-D MNIST model (latent scatter, manifold): 784-500-500-2, 75 epochs",
                 ["--latent", "2"]),
    "frey-z2": ("notebook 07's Frey-faces model: 560-200-2 tanh, Gaussian decoder (variance "
                "floor 1/(12*256^2)), dequantised 8-bit pixels, block split, 1000 epochs",
                ["--dataset", "frey", "--hidden", "200", "--latent", "2", "--activation", "tanh",
                 "--epochs", "1000", "--dequantize"]),
}
SEED = 0


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _discrete(res: dict, data, split: str) -> dict:
    """A dequantised run's bounds on -log P of the discrete pixels (nats, bits/dim)."""
    if not data.dequantize:
        return {}
    keys = ("discrete_neg_elbo", "discrete_neg_elbo_bits_per_dim",
            "discrete_neg_log_likelihood_iw", "discrete_neg_log_likelihood_iw_bits_per_dim")
    return {"dequantized": True, "split": split,
            **{k: round(res[k], 4 if k.endswith("dim") else 3) for k in keys}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "pretrained")
    p.add_argument("--skip-train", action="store_true", help="export runs already in --runs")
    p.add_argument("--trained-at", default=None, help="commit the runs were trained at "
                   "(with --skip-train; default: this checkout's HEAD)")
    p.add_argument("--k", type=int, default=1000, help="importance samples for -L_k")
    p.add_argument("--only", nargs="*", default=list(MODELS))
    args = p.parse_args()
    commit = args.trained_at or git_commit()
    old = json.loads(MANIFEST.read_text())["models"] if MANIFEST.exists() else {}
    entries = dict(old)
    for name in args.only:
        description, extra = MODELS[name]
        argv = ["numpyvae", "train", *extra, "--seed", str(SEED), "--no-progress",
                "--out", str(args.runs / name)]
        if not args.skip_train:
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
            subprocess.run([sys.executable, "-m", "numpyvae", *argv[1:]], check=True, env=env)
        run = open_run(args.runs / name)
        out = HERE / f"{name}.npz"
        run.vae.save(out, with_state=False)  # parameters only: no optimiser or RNG state
        shutil.copyfile(args.runs / name / "history.csv", HERE / f"{name}-history.csv")
        t0 = time.perf_counter()
        data = run.data()
        res = evaluate(run.vae, data.test_x, k=args.k, rng=np.random.default_rng(SEED),
                       progress=True, dequantized=data.dequantize)
        seconds = time.perf_counter() - t0
        entries[name] = {
            "file": out.name, "description": description,
            "command": " ".join(shlex.quote(a) for a in argv[:-2]),
            "seed": SEED, "trained_at_commit": commit, "sha256": sha256_of(out),
            "bytes": out.stat().st_size, "dtype": run.vae.config.dtype,
            "epochs": run.epoch, "train_seconds": round(sum(run.history["seconds"]), 1),
            "test": {"examples": len(data.test_x), "binarization": data.mode,
                     "neg_elbo": round(res["neg_elbo"], 3), "recon": round(res["recon"], 3),
                     "kl": round(res["kl"], 3), "elbo_samples": 1, "k": args.k,
                     "neg_log_likelihood_iw": round(res["neg_log_likelihood_iw"], 3),
                     "eval_seed": SEED, "eval_seconds": round(seconds, 1),
                     **_discrete(res, data, run.train_config.split)},
            "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        }
        print(f"{name}: {entries[name]}")
        MANIFEST.write_text(json.dumps({"models": entries}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
