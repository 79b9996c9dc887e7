"""What Adam costs alone, after a forward pass, and in a training step, with the cores near or far.

    python benchmarks/bench_adam_context.py [--seconds 120] [--batch 100]

The seed model's pooled Adam (``FastAdam`` on BLAS's threads, split by the rows of each weight
matrix) timed three ways, round after round, each round classed by the cores' placement
(``bench_train.handoff``, as in ``cores.py``):

* *alone*: Adam again and again on the same buffers, nothing in between: its four streams
  stay in the caches of the core that updates them;
* *after a forward pass*: ``engine.loss`` then Adam, minus ``engine.loss`` alone: the forward
  products read every weight matrix, OpenBLAS's two threads each a range of its *columns*, while
  Adam's thread updates whole *rows*;
* *in a step*: Adam timed inside training steps (``engine.forward_backward`` then Adam, as
  ``model.step`` does), beside the step's forward and backward passes, with and without Adam
  between them.

What the step adds to Adam alone is the cost of the weights' cache lines moving between the two
cores (and of the buffers the products pushed out). Where the cores share an L3 cache (near)
that move is short; where they do not (far) each such line crosses between the core complexes.
The forward and backward passes pay too: their products read weights that Adam has just written
on the other core.
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

from numpyvae.model import VAE  # noqa: E402

STEPS = 30  # per timing


def timings(vae, batches) -> dict[str, float]:
    """One round: seconds per call of each way (means over ``STEPS`` calls). Adam alone and
    after a forward pass run on the model's buffers with a learning rate of 1e-9 (the same
    arithmetic; the same gradient applied again and again at 1e-3 would carry the weights
    away), and are then undone; the steps train the model."""
    engine, opt, theta, grad = vae._engine, vae.optimizer, vae.params.flat, vae.grads.flat
    B = len(batches[0])
    saved = theta.copy(), opt.m.copy(), opt.v.copy(), opt.t

    lr = opt.lr

    def restore():
        theta[:], opt.m[:], opt.v[:] = saved[0], saved[1], saved[2]
        opt.t, opt.lr = saved[3], lr

    def mean(fn) -> float:
        t = time.perf_counter()
        for i in range(STEPS):
            fn(i)
        return (time.perf_counter() - t) / STEPS

    def forward_then_adam(i):
        engine.loss(batches[i % len(batches)], vae._noise(B))
        opt.step(theta, grad)

    opt.lr = 1e-9
    out = {"alone": mean(lambda i: opt.step(theta, grad))}
    restore()
    out["forward"] = mean(lambda i: engine.loss(batches[i % len(batches)], vae._noise(B)))
    opt.lr = 1e-9
    out["forward_adam"] = mean(forward_then_adam)
    restore()
    out["forward_backward"] = mean(lambda i: engine.forward_backward(
        batches[i % len(batches)], vae._noise(B)))
    adam = []

    def step(i):  # model.step, with Adam's share timed
        engine.forward_backward(batches[i % len(batches)], vae._noise(B))
        t = time.perf_counter()
        opt.step(theta, grad)
        adam.append(time.perf_counter() - t)

    out["step"] = mean(step)
    out["in_step"] = sum(adam) / len(adam)
    out["after_forward"] = out["forward_adam"] - out["forward"]
    out["fb_in_step"] = out["step"] - out["in_step"]
    return out


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    if math.isnan(bench_train.handoff()):
        sys.exit("bench_adam_context.py needs NumPy's OpenBLAS with two or more pthreads "
                 "(kernels.pool); this process has one, or none, or NUMPYVAE_BLAS_POOL=0")
    vae = VAE(**bench_train.SEED, backend="numba", seed=0)
    batches = bench_train.mnist_batches(args.batch, 10)
    for b in batches[:5]:
        vae.step(b)
    rounds = []
    t_end = time.time() + args.seconds
    while time.time() < t_end:
        before = bench_train.handoff()
        rounds.append({"t": timings(vae, batches), "handoff": (before, bench_train.handoff())})
    print(f"# Adam alone, after a forward pass, in a step (batch {args.batch})\n\nCPU: "
          f"{bench_train.cpu_name()}; seed model, 1,316,824 float32 parameters; ms per call, "
          f"medians of rounds of {STEPS} calls each, by the cores' placement.\n")
    print("| placement | rounds | hand-off (ns) | Adam alone | Adam after a forward pass | "
          "Adam in a step | forward pass alone | forward + backward alone | forward + backward "
          "in a step | step |\n|---|---|---|---|---|---|---|---|---|---|")
    for kind, sel in bench_train.by_placement(rounds).items():
        med = {k: 1e3 * statistics.median(r["t"][k] for r in sel) for k in sel[0]["t"]}
        hand = statistics.median(h for r in sel for h in r["handoff"])
        print(f"| {kind} | {len(sel)} | {hand:.0f} | {med['alone']:.3f} | "
              f"{med['after_forward']:.3f} | {med['in_step']:.3f} | {med['forward']:.3f} | "
              f"{med['forward_backward']:.3f} | {med['fb_in_step']:.3f} | {med['step']:.3f} |",
              flush=True)
    return rounds


if __name__ == "__main__":
    main()
