"""Training steps of two checkouts of numpyvae, side by side on this machine.

    git worktree add /tmp/numpyvae-old <commit>
    python benchmarks/bench_versions.py /tmp/numpyvae-old            # against this checkout
    python benchmarks/bench_versions.py OLD NEW --batch 100 --passes 15

Each checkout trains the seed model (numba backend, float32, seed 0) in a process of its own on
the same binarised MNIST batches. The processes take turns: one pass is half a second of
unmeasured steps (so the other process's BLAS threads have stopped spinning) and then a second
of timed ones; the order alternates from pass to pass. The table gives each one's median time
per step and the median, over passes, of the ratio of the two passes run back to back: the
machine's slower drifts cancel in it, where they would not between two separate runs of
bench_train.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from numpyvae.data import load_mnist
from numpyvae.model import VAE
B = int(sys.argv[2])
images = load_mnist("train")[0][: 10 * B]
rng = np.random.default_rng(0)
batches = [(rng.random((B, 784), dtype=np.float32) < images[i * B:(i + 1) * B] / np.float32(255))
           .astype(np.float32) for i in range(10)]
vae = VAE(backend="numba", seed=0)
vae.step(batches[0])
import numpyvae
print("ready", numpyvae.__version__, flush=True)
for _ in sys.stdin:
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        vae.step(batches[0])
    n, t = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - t < 1.0:
        vae.step(batches[n % 10])
        n += 1
    print((time.perf_counter() - t) / n, flush=True)
"""


def compare(roots: list[Path], B: int, passes: int) -> dict:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(B)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for root in roots]
    versions = []
    for p in procs:
        ready = p.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"a worker did not start (batch {B}); run it alone to see why")
        versions.append(ready[1])
    times: list[list[float]] = [[] for _ in procs]
    for i in range(passes):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            procs[k].stdin.write("go\n")
            procs[k].stdin.flush()
            times[k].append(float(procs[k].stdout.readline()))
    for p in procs:
        p.stdin.close()
        p.wait()
    ratios = [a / b for a, b in zip(times[0], times[1], strict=True)]
    return {"versions": versions, "ms": [1e3 * statistics.median(t) for t in times],
            "ratio": (statistics.median(ratios), min(ratios), max(ratios))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="a checkout of numpyvae (the baseline)")
    parser.add_argument("second", type=Path, nargs="?", default=HERE,
                        help="another checkout (default: this one)")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 100, 512])
    parser.add_argument("--passes", type=int, default=15)
    args = parser.parse_args(argv)
    roots = [args.first.resolve(), args.second.resolve()]
    for root in roots:
        if not (root / "numpyvae" / "__init__.py").exists():
            raise SystemExit(f"{root} is not a checkout of numpyvae (no numpyvae/__init__.py)")
    print(f"# {roots[0]} against {roots[1]}\n")
    print("| batch | first: version, ms per step | second: version, ms per step | "
          "first / second, median of passes (range) |\n|---|---|---|---|")
    for B in args.batch:
        r = compare(roots, B, args.passes)
        print(f"| {B} | {r['versions'][0]}, {r['ms'][0]:.2f} | {r['versions'][1]}, "
              f"{r['ms'][1]:.2f} | {r['ratio'][0]:.3f} ({r['ratio'][1]:.3f}-{r['ratio'][2]:.3f}) |")


if __name__ == "__main__":
    main()
