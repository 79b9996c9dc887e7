"""Adam split by the rows of the weight matrices, or the flat buffer in halves: which is faster?

    python benchmarks/bench_adam_split.py [--seconds 120] [--batch 32 100 512]

Two seed models in one process, the same but for ``FastAdam``'s split between BLAS's threads:
``split_rows(engine.weight_blocks())`` (what ``engines.build`` does since 0.4.2) and
``split_rows([])`` (the whole buffer in two halves, as before). They train in turns, 30 steps
each, and each pair of turns is classed by the cores' placement (``bench_train.handoff``: near
when the two threads' hand-off is within twice the run's lowest). Prints the median ratio of the
pairs' step times, and first checks that both give the same bits.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402

from numpyvae.model import VAE  # noqa: E402


def run(vae, batches, n: int) -> float:
    for i in range(2):
        vae.step(batches[i])
    t = time.perf_counter()
    for i in range(n):
        vae.step(batches[i % len(batches)])
    return (time.perf_counter() - t) / n


def compare(B: int, seconds: float) -> None:
    rows = VAE(**bench_train.SEED, backend="numba", seed=0)
    halves = VAE(**bench_train.SEED, backend="numba", seed=0)
    halves.optimizer.split_rows([])
    batches = bench_train.mnist_batches(B, 10)
    for i in range(5):
        rows.step(batches[i])
        halves.step(batches[i])
    same = all(np.array_equal(a, b) for a, b in (
        (rows.params.flat, halves.params.flat), (rows.optimizer.m, halves.optimizer.m),
        (rows.optimizer.v, halves.optimizer.v)))
    pairs, t_end, k = [], time.time() + seconds, 0
    while time.time() < t_end:
        before = bench_train.handoff()
        if k % 2 == 0:
            t_halves, t_rows = run(halves, batches, 30), run(rows, batches, 30)
        else:
            t_rows, t_halves = run(rows, batches, 30), run(halves, batches, 30)
        pairs.append(((before, bench_train.handoff()), t_halves, t_rows))
        k += 1
    for kind, group in bench_train.by_placement(pairs, lambda pair: pair[0]).items():
        sel = [(a, b) for _, a, b in group]
        r = [a / b for a, b in sel]
        q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0], r[0], r[0]]
        print(f"| {B} | {'yes' if same else 'NO'} | {kind} | {len(sel)} | "
              f"{1e3 * statistics.median(a for a, _ in sel):.2f} | "
              f"{1e3 * statistics.median(b for _, b in sel):.2f} | {statistics.median(r):.3f} "
              f"({q[0]:.3f}-{q[2]:.3f}) |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="per batch size")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 100, 512])
    args = parser.parse_args(argv)
    if math.isnan(bench_train.handoff()):  # no pool of two threads
        sys.exit("needs NumPy's OpenBLAS with two or more pthreads (kernels.pool)")
    print(f"# FastAdam split by rows or in halves\n\nCPU: {bench_train.cpu_name()}\n")
    print("| batch | same bits | placement | pairs | halves (ms/step) | by rows (ms/step) | "
          "halves / by rows, median (quartiles) |\n|---|---|---|---|---|---|---|")
    for B in args.batch:
        compare(B, args.seconds)


if __name__ == "__main__":
    main()
