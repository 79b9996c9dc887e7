"""Are BLAS's two threads near or far apart, and what does that do to a training step?

    python benchmarks/cores.py [--seconds 120]

Round after round, for ``--seconds``: the hand-off latency between BLAS's two threads
(``numpyvae.kernels.handoff``, before and after the round), then the seed model's training steps
at batch 32 and 100, split as ``bench_train.py`` splits them (products, Adam, the rest), and the
step's products replayed alone. A round whose two hand-offs are both within twice the lowest of
the run counts as *near*, both above as *far*; rounds that changed in between are left out of the
summary. On a machine whose cores share one L3 cache every round is near.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402

BATCHES = (32, 100)
COLUMNS = ("step", "matmul_alone", "matmul", "optimiser")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if math.isnan(bench_train.handoff()):
        sys.exit("cores.py needs NumPy's OpenBLAS with two or more pthreads (kernels.pool); "
                 "this process has one, or none, or NUMPYVAE_BLAS_POOL=0: nothing to measure")
    print(f"# Hand-off between BLAS's threads and the training step\n\nCPU: "
          f"{bench_train.cpu_name()}\n")
    print("| time | hand-off before, after (ns) | " + " | ".join(
        f"batch {B}: step, products alone, matmul, Adam (ms)" for B in BATCHES) + " |")
    print("|---|---|" + "---|" * len(BATCHES))
    rounds = []
    t_end = time.time() + args.seconds
    while time.time() < t_end:
        before = bench_train.handoff()
        split = {B: bench_train.time_split(B, steps=40, passes=1) for B in BATCHES}
        rounds.append({"handoff": (before, bench_train.handoff()), "split": split})
        cells = [f"{1e3 * split[B][c]:.2f}" for B in BATCHES for c in COLUMNS]
        print(f"| {time.strftime('%H:%M:%S')} | {before:.0f}, {rounds[-1]['handoff'][1]:.0f} | "
              + " | ".join(", ".join(cells[i:i + len(COLUMNS)])
                           for i in range(0, len(cells), len(COLUMNS))) + " |", flush=True)
    groups = bench_train.by_placement(rounds)
    for placement, sel in groups.items():
        for r in sel:
            r["placement"] = placement
    print("\n## Medians by placement\n")
    print("| placement | rounds | hand-off (ns) | batch | step | products alone | step / "
          "products | matmul in the step | Adam |\n|---|---|---|---|---|---|---|---|---|")
    for placement, sel in groups.items():
        hand = statistics.median(h for r in sel for h in r["handoff"])
        for B in BATCHES:
            med = {c: 1e3 * statistics.median(r["split"][B][c] for r in sel) for c in COLUMNS}
            ratio = statistics.median(r["split"][B]["step"] / r["split"][B]["matmul_alone"]
                                      for r in sel)
            print(f"| {placement} | {len(sel)} | {hand:.0f} | {B} | {med['step']:.2f} | "
                  f"{med['matmul_alone']:.2f} | {ratio:.2f} | {med['matmul']:.2f} | "
                  f"{med['optimiser']:.2f} |")
    return rounds


if __name__ == "__main__":
    main()
