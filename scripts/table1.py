"""Burda, Grosse & Salakhutdinov (2015), Table 1 (MNIST, one stochastic layer), on this machine.

    python scripts/table1.py run --out runs/table1 --passes 121      # train the rows (resumable)
    python scripts/table1.py report --out runs/table1 --k 5000        # evaluate, print the table

``run`` trains every row with ``numpyvae train`` in its own process (in parallel, one BLAS thread
each), for ``--passes`` passes of Burda's schedule (``--schedule burda``; 3280 passes is the
whole of it). Run it again with the same or a larger ``--passes`` to continue: each row resumes
from its checkpoint. ``report`` evaluates -L_k on the test set, counts active units and prints
a Markdown table beside the paper's numbers (and writes it to OUT/table1.md).

Rows: VAE (k = 1), VAE (k = 5) (the ELBO averaged over 5 samples), IWAE (k = 5); ``--rows``
adds "iwae50" or "vae50" (about ten times the cost of a k = 5 row).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS = {  # name -> (label, objective, k, the paper's test -log p(x), Table 1)
    "vae1": ("VAE (k = 1)", "elbo", 1, 86.76),
    "vae5": ("VAE (k = 5)", "elbo", 5, 86.47),
    "iwae5": ("IWAE (k = 5)", "iwae", 5, 85.54),
    "vae50": ("VAE (k = 50)", "elbo", 50, 86.35),
    "iwae50": ("IWAE (k = 50)", "iwae", 50, 84.78),
}
DEFAULT_ROWS = ("vae1", "vae5", "iwae5")
# Burda et al., section 5: 784-200-200-50, tanh, Bernoulli, Glorot-uniform weights, output bias
# at the training mean, Adam (0.9, 0.999, 1e-4), batch 20, their schedule, dynamic binarisation
MODEL = ["--dataset", "mnist", "--hidden", "200", "200", "--latent", "50", "--activation",
         "tanh", "--init", "xavier", "--output-bias", "data-mean", "--adam-eps", "1e-4",
         "--batch-size", "20", "--schedule", "burda", "--binarize", "dynamic"]


def train_command(row: str, out: Path, passes: int, seed: int) -> list[str]:
    _, objective, k, _ = ROWS[row]
    run = out / row
    cmd = [sys.executable, "-m", "numpyvae", "train", "--objective", objective, "--k", str(k),
           "--epochs", str(passes), "--out", str(run), "--no-progress", "--no-figures"]
    if (run / "checkpoint.npz").exists():
        return [*cmd, "--resume"]
    return [*cmd, *MODEL, "--seed", str(seed)]


def cmd_run(args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    procs = {}
    for row in args.rows:
        cmd = train_command(row, args.out, args.passes, args.seed)
        log = open(args.out / f"{row}.log", "a")  # noqa: SIM115 (closed with the process)
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        print(f"{row}: {' '.join(cmd)}  (log: {log.name})")
        procs[row] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = 0
    for row, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        print(f"{row}: exit {code}")
        failed += code != 0
    return 1 if failed else 0


def cmd_report(args) -> int:
    from numpyvae.evaluate import importance_weighted_bound
    from numpyvae.runs import open_run

    lines = [f"| row | test −L_{args.k} (nats) | paper | active units | passes | "
             "training CPU time | wall time |", "|---|---|---|---|---|---|---|"]
    results = {}
    for row in args.rows:
        label, _, _, paper = ROWS[row]
        run = open_run(args.out / row / "checkpoint.npz")
        data = run.data(test_size=args.test_size)
        t0 = time.perf_counter()
        lk = importance_weighted_bound(run.vae, data.test_x, args.k,
                                       np.random.default_rng(args.seed))
        eval_s = time.perf_counter() - t0
        done = json.loads((args.out / row / "results.json").read_text()) if (
            args.out / row / "results.json").exists() else {}
        h = run.history
        nll, se = float(-lk.mean()), float(lk.std(ddof=1) / np.sqrt(len(lk)))
        cpu, wall = sum(h.get("cpu_seconds", [])), sum(h.get("seconds", []))
        units = done.get("active_units", "–")
        results[row] = {"label": label, "neg_log_likelihood": nll, "standard_error": se,
                        "k": args.k, "test_images": len(lk), "active_units": units,
                        "passes": run.epoch, "cpu_seconds": cpu, "wall_seconds": wall,
                        "eval_seconds": eval_s, "paper": paper}
        lines.append(f"| {label} | {nll:.2f} ± {se:.2f} | {paper:.2f} | {units} | {run.epoch} | "
                     f"{cpu / 60:.0f} min | {wall / 60:.0f} min |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    note = (f"\n\n−L_{args.k} on the first {args.test_size or 10000} test images (± one standard "
            "error over images), seed "
            f"{args.seed}; the paper's numbers are for 3280 passes and the whole test set.\n")
    (args.out / "table1.md").write_text(table + note)
    (args.out / "table1.json").write_text(json.dumps(results, indent=1))
    print(table + note)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train (or continue) every row")
    r.add_argument("--passes", type=int, default=3280, help="passes of Burda's schedule")
    r.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("report", help="evaluate the rows and print the table")
    e.add_argument("--k", type=int, default=5000)
    e.add_argument("--test-size", type=int, default=None, help="first N test images")
    e.add_argument("--seed", type=int, default=0)
    for q in (r, e):
        q.add_argument("--out", type=Path, default=Path("runs/table1"))
        q.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(DEFAULT_ROWS))
    args = p.parse_args(argv)
    return cmd_run(args) if args.command == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
