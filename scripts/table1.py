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


def evaluate_row(args, row: str) -> dict:
    """-L_k of one row on the test set, cached in OUT/ROW/eval-k{K}-n{N}-s{SEED}.json (so rows
    can be evaluated in parallel processes and the table assembled afterwards)."""
    from numpyvae.evaluate import importance_weighted_bound
    from numpyvae.runs import open_run

    run_dir = args.out / row
    cache = run_dir / f"eval-k{args.k}-n{args.test_size or 'all'}-s{args.seed}.json"
    run = open_run(run_dir / "checkpoint.npz")
    if cache.exists():
        r = json.loads(cache.read_text())
        if r["passes"] == run.epoch and r["steps"] == run.vae.optimizer.t:
            return r
    label, _, _, paper = ROWS[row]
    data = run.data(test_size=args.test_size)
    t0 = time.perf_counter()
    lk = importance_weighted_bound(run.vae, data.test_x, args.k, np.random.default_rng(args.seed))
    eval_s = time.perf_counter() - t0
    done = json.loads((run_dir / "results.json").read_text()) if (
        run_dir / "results.json").exists() else {}
    h = run.history
    cpu = [c for c in h.get("cpu_seconds", []) if c == c]  # NaN: epochs before the column
    r = {"label": label, "neg_log_likelihood": float(-lk.mean()),
         "standard_error": float(lk.std(ddof=1) / np.sqrt(len(lk))), "k": args.k,
         "test_images": len(lk), "active_units": done.get("active_units", "–"),
         "passes": run.epoch, "steps": run.vae.optimizer.t, "cpu_seconds": float(sum(cpu)),
         "cpu_per_pass": float(np.median(cpu)) if cpu else float("nan"),
         "wall_seconds": float(sum(h.get("seconds", []))), "eval_seconds": eval_s,
         "test_neg_elbo": done.get("test_neg_elbo"), "paper": paper,
         "per_image": [float(v) for v in -lk]}
    cache.write_text(json.dumps(r, indent=1))
    return r


def cmd_report(args) -> int:
    lines = [f"| row | test −L_{args.k} (nats) | − first row, same images | paper | active units "
             "| passes | training CPU time | wall time |", "|---|---|---|---|---|---|---|---|"]
    results = {}
    for row in args.rows:
        r = evaluate_row(args, row)
        results[row] = r
        units = r["active_units"]
        first = np.array(results[args.rows[0]]["per_image"])
        d = np.array(r["per_image"]) - first  # paired: the images' own spread cancels
        r["minus_first_row"] = float(d.mean())
        r["minus_first_row_se"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        paired = ("–" if row == args.rows[0] else
                  f"{r['minus_first_row']:+.2f} ± {r['minus_first_row_se']:.2f}")
        lines.append(f"| {r['label']} | {r['neg_log_likelihood']:.2f} ± {r['standard_error']:.2f} "
                     f"| {paired} | {r['paper']:.2f} | {units} | {r['passes']} | "
                     f"{r['cpu_seconds'] / 60:.0f} min ({r['cpu_per_pass']:.1f} s/pass) | "
                     f"{r['wall_seconds'] / 60:.0f} min |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    note = (f"\n\n−L_{args.k} on the first {args.test_size or 10000} test images (± one standard "
            "error over images; the third column is the difference from the first row on the "
            f"same images, ± its standard error), seed {args.seed}; CPU time is the sum of the "
            "epochs' process times (the part of an epoch interrupted by a restart is not "
            "counted) and s/pass its median; the paper's numbers are for 3280 passes and the "
            "whole test set.\n")
    (args.out / "table1.md").write_text(table + note)
    (args.out / "table1.json").write_text(json.dumps(
        {row: {k: v for k, v in r.items() if k != "per_image"} for row, r in results.items()},
        indent=1))
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
