"""Training speed and memory of numpyvae on this machine, with PyTorch eager alongside.

    python benchmarks/bench_train.py            # full run, a few minutes
    python benchmarks/bench_train.py --quick    # smoke run, well under a minute
    python benchmarks/bench_train.py --json results.json

Prints Markdown tables: throughput of the seed model (784-500-500-20, softplus, Bernoulli, Adam,
float32) for both backends and PyTorch eager; where a step's time goes; achieved GFLOP/s against
this process's own 2048^2 matrix product; first-step latency with a cold and a warm Numba
cache; peak memory and time of a full MNIST epoch; the hand-written ``kernels.matmul`` against
BLAS. See benchmarks/README.md for the method and the numbers from the reference machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from numpyvae import fast, kernels, layers  # noqa: E402
from numpyvae.config import VAEConfig  # noqa: E402
from numpyvae.kernels.handoff import handoff_ns as _handoff_ns  # noqa: E402
from numpyvae.model import VAE  # noqa: E402

SEED = {"n_input": 784, "hidden": (500, 500), "n_latent": 20, "activation": "softplus",
        "decoder": "bernoulli", "dtype": "float32"}


# --------------------------------------------------------------------------- facts
def flops_per_image(n_input=784, hidden=(500, 500), n_latent=20) -> int:
    """Multiply-adds x 2 of one training image: forward x W, backward dW = x^T dy and
    dx = dy W^T for every dense layer, except dx of the first encoder layer (the data)."""
    shapes = layers.layout(VAEConfig(n_input=n_input, hidden=hidden, n_latent=n_latent)).shapes()
    sizes = [shape[0] * shape[1] for name, shape in shapes.items() if name.endswith(".W")]
    first = shapes["enc.h1.W"][0] * shapes["enc.h1.W"][1] if hidden else 0
    return 2 * (3 * sum(sizes) - first)


def blas_info() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"name": "unknown (pip install threadpoolctl)", "threads": os.cpu_count()}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {"name": f"{pool['internal_api']} {pool.get('version')} "
                            f"({pool.get('architecture')}, {pool.get('threading_layer')})",
                    "threads": pool["num_threads"]}
    return {"name": "none found", "threads": 1}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def idle_fraction(seconds: float = 3.0) -> float | None:
    """Share of CPU time the whole machine spent idle over a few seconds (Linux), before we run:
    below ~0.9 another process is competing and every number will suffer."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])
    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return None
    return (idle1 - idle0) / max(total1 - total0, 1)


def sgemm_rate(n=2048, reps=5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, a, out=out)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def mnist_batches(B: int, n_batches: int) -> list[np.ndarray]:
    """Binarised MNIST batches (fixed draws), so every contender sees the same data."""
    images = load_mnist_images()[: B * n_batches]
    rng = np.random.default_rng(0)
    x = (rng.random(images.shape, dtype=np.float32) < images / np.float32(255)).astype(np.float32)
    return [x[i * B:(i + 1) * B] for i in range(n_batches)]


def load_mnist_images() -> np.ndarray:
    try:
        from numpyvae.data import load_mnist
        return load_mnist("train")[0]
    except ImportError:
        import gzip
        path = ROOT.parent / "shared" / "data" / "mnist" / "train-images-idx3-ubyte.gz"
        with gzip.open(path) as f:
            return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)


# --------------------------------------------------------------------------- contenders
class Ours:
    def __init__(self, backend, batches):
        self.name = f"numpyvae {backend}"
        self.vae = VAE(**SEED, backend=backend, seed=0)
        self.batches, self.i = batches, 0

    def step(self):
        self.vae.step(self.batches[self.i % len(self.batches)])
        self.i += 1


class Torch:
    """The same model in PyTorch eager: nn.Linear, softplus, BCE-with-logits summed over
    pixels, analytic KL, mean over the batch; initial weights copied from numpyvae's."""

    def __init__(self, batches, fused, threads):
        import torch
        from torch import nn
        torch.set_num_threads(threads)
        self.torch = torch
        ref = VAE(**SEED, backend="numba", seed=0)
        layers = {}
        for name in ("enc.h1", "enc.h2", "enc.mu", "enc.logvar", "dec.h1", "dec.h2", "dec.out"):
            W, b = ref.params[f"{name}.W"], ref.params[f"{name}.b"]
            lin = nn.Linear(*W.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b.copy()))
            layers[name.replace(".", "_")] = lin
        self.m = nn.ModuleDict(layers)
        self.opt = torch.optim.Adam(self.m.parameters(), lr=1e-3, fused=fused or None)
        self.name = "PyTorch eager, Adam(fused=True)" if fused else "PyTorch eager, Adam"
        self.batches = [torch.from_numpy(b) for b in batches]
        self.i, self.ref = 0, ref

    def loss(self, x, eps):
        F, m = self.torch.nn.functional, self.m
        h = F.softplus(m["enc_h2"](F.softplus(m["enc_h1"](x))))
        mu, logvar = m["enc_mu"](h), m["enc_logvar"](h)
        z = mu + self.torch.exp(0.5 * logvar) * eps
        logits = m["dec_out"](F.softplus(m["dec_h2"](F.softplus(m["dec_h1"](z)))))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (mu * mu + self.torch.expm1(logvar) - logvar).sum()
        return (recon + kl) / x.shape[0]

    def check_same_model(self) -> float:
        """Relative difference of the first loss, numpyvae vs torch, same weights and eps."""
        x = self.batches[0]
        eps = np.random.default_rng(1).standard_normal((x.shape[0], 20), dtype=np.float32)
        ours = self.ref.loss_and_gradients(x.numpy(), eps)[0]
        with self.torch.no_grad():
            theirs = float(self.loss(x, self.torch.from_numpy(eps)))
        return abs(ours - theirs) / abs(ours)

    def step(self):
        x = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        self.loss(x, self.torch.randn(x.shape[0], 20)).backward()
        self.opt.step()


def time_contenders(contenders, passes: int, seconds: float,
                    handoffs: list | None = None) -> dict[str, list[float]]:
    """Seconds per step of every pass, per contender. Contenders alternate, in rotating order;
    each pass first runs unmeasured for a while so that the other runtime's idle threads stop
    spinning. A pass of every contender takes a few seconds, so a ratio of two contenders'
    times *within* a pass cancels the machine's slower drifts (see ``ratio``). ``handoffs``:
    gets (before, after) ``handoff()`` of every pass."""
    per_step = {c.name: [] for c in contenders}
    for c in contenders:
        c.step()  # compile, allocate
    for p in range(passes):
        before = handoff() if handoffs is not None else None
        for c in contenders[p % len(contenders):] + contenders[:p % len(contenders)]:
            t_end = time.perf_counter() + max(0.5, 0.3 * seconds)
            while time.perf_counter() < t_end:
                c.step()
            n, t0 = 0, time.perf_counter()
            while n < 3 or time.perf_counter() - t0 < seconds:
                c.step()
                n += 1
            per_step[c.name].append((time.perf_counter() - t0) / n)
        if handoffs is not None:
            handoffs.append((before, handoff()))
    return per_step


def ratio(slow: list[float], fast: list[float]) -> tuple[float, float, float]:
    """Median, min and max over passes of slow[p] / fast[p]: how many times faster ``fast``
    was than ``slow`` in the same pass."""
    r = [a / b for a, b in zip(slow, fast, strict=True)]
    return statistics.median(r), min(r), max(r)


def handoff() -> float:
    """Nanoseconds for a cache line to pass between BLAS's two threads (the lowest of three
    probes, so that a thread of another runtime still spinning does not count); NaN where it
    cannot be measured. About 40 ns when the two cores share an L3 cache, four times that
    when they do not (``numpyvae.kernels.handoff``, ``benchmarks/cores.py``)."""
    probes = [p for p in (_handoff_ns(5_000) for _ in range(3)) if p is not None]
    return min(probes) if probes else float("nan")


def placement(values: list[float], lowest: float) -> str:
    """"near" if every hand-off in ``values`` is within twice the run's lowest, "far" if none
    is, else "changed" (the host moved a thread in between)."""
    near = [v <= 2 * lowest for v in values]
    return "near" if all(near) else "far" if not any(near) else "changed"


def by_placement(rounds: list, handoffs=lambda r: r["handoff"]) -> dict[str, list]:
    """Rounds grouped "near", "far", "changed" (in that order, empty groups left out) by
    ``placement`` of each round's (before, after) hand-offs against the lowest of them all."""
    lowest = min(min(handoffs(r)) for r in rounds)
    groups: dict[str, list] = {"near": [], "far": [], "changed": []}
    for r in rounds:
        groups[placement(list(handoffs(r)), lowest)].append(r)
    return {kind: sel for kind, sel in groups.items() if sel}


# --------------------------------------------------------------------------- time split
class _Timed:
    """Stands in for a module inside numpyvae.fast: times the calls named in ``names``."""

    def __init__(self, module, names, totals, record=None):
        self._module, self._names, self._totals, self._record = module, names, totals, record

    def __getattr__(self, attr):
        f = getattr(self._module, attr)
        if attr not in self._names:
            return f
        group = self._names[attr]

        def timed(*args, **kw):
            t = time.perf_counter()
            result = f(*args, **kw)
            self._totals[group] += time.perf_counter() - t
            if self._record is not None and attr == "matmul":
                self._record.append((args, kw["out"]))
            return result
        return timed


def record_products(vae, X) -> list:
    """The matrix products of one ``vae.step(X)``: (args, out) of every np.matmul, in order."""
    record: list = []
    orig_np = fast.np
    fast.np = _Timed(np, {"matmul": "matmul"}, {"matmul": 0.0}, record)
    try:
        vae.step(X)
    finally:
        fast.np = orig_np
    return record


def replay(calls, steps: int) -> float:
    """Seconds per step of ``calls`` (from ``record_products``) replayed back to back."""
    t = time.perf_counter()
    for _ in range(steps):
        for args, out in calls:
            np.matmul(*args, out=out)
    return (time.perf_counter() - t) / steps


def time_split(B: int, steps: int, passes: int) -> dict[str, float]:
    """Seconds per step in matmul / first-layer sums / elementwise kernels / optimiser / the
    rest, by timing every call inside real steps; a real step's time without the timing
    wrappers; and the step's products replayed alone, all alternating within each pass.

    With binarised batches the first layer's two products are sums of rows (DENSE-5), so a
    step of the seed model makes 15 BLAS products (the latent heads are one product in each
    direction). "dense" replays the 17 that the same step makes with ``binary_input`` off,
    all in BLAS: every product the model has, as BLAS computes them; "dense_step" times that
    step itself (the sums off), against which those 17 are its own products.
    """
    batches = mnist_batches(B, 10)
    vae = VAE(**SEED, backend="numba", seed=0)
    engine = vae.engine
    engine.binary_input = False
    dense_calls = record_products(vae, batches[0])
    engine.binary_input = True
    calls = record_products(vae, batches[0])  # one step's products, replayed below
    totals = dict.fromkeys(["matmul", "binary", "elementwise", "optimiser"], 0.0)
    kernel_names = {name: "elementwise" for name in dir(kernels)
                    if hasattr(getattr(kernels, name), "py_func")}  # the Numba kernels
    kernel_names.update({name: "binary" for name in kernel_names if name.startswith("binary")})
    kernel_names["adam_step"] = "optimiser"
    timed_np = _Timed(np, {"matmul": "matmul", "add": "elementwise"}, totals)
    timed_kernels = _Timed(kernels, kernel_names, totals)
    orig_np, orig_kernels = fast.np, fast.kernels
    # (an older numpyvae, without the 0/1 sums, is measured too: every sum column reads 0)
    orig_act, orig_binary = engine.activate, getattr(engine, "binary_activate", None)
    timed_act = _Timed(kernels, {orig_act.__name__: "elementwise"}, totals).__getattr__(
        orig_act.__name__)
    timed_binary = orig_binary and _Timed(kernels, {orig_binary.__name__: "binary"},
                                          totals).__getattr__(orig_binary.__name__)
    pool = engine.pool  # kernels on BLAS's threads: one call per pooled kernel
    orig_run = pool.run if pool is not None else None

    def timed_run(task, n=None):
        t = time.perf_counter()
        orig_run(task, n)
        group = ("optimiser" if task.name == "adam_step" else
                 "binary" if task.name.startswith("binary") else "elementwise")
        totals[group] += time.perf_counter() - t

    def wrap(on: bool) -> None:
        fast.np, fast.kernels = (timed_np, timed_kernels) if on else (orig_np, orig_kernels)
        engine.activate = timed_act if on else orig_act
        if orig_binary is not None:
            engine.binary_activate = timed_binary if on else orig_binary
        if pool is not None:
            if on:
                pool.run = timed_run
            elif "run" in pool.__dict__:
                del pool.run  # back to the class's method

    def run_steps() -> float:
        t = time.perf_counter()
        for i in range(steps):
            vae.step(batches[i % len(batches)])
        return (time.perf_counter() - t) / steps

    t_end = time.perf_counter() + 0.5  # as in time_contenders: let the threads of whatever
    while time.perf_counter() < t_end:  # ran before (PyTorch's OpenMP pool) stop spinning
        vae.step(batches[0])
    wrapped, real, alone, dense, dense_real, passes_parts, handoffs = [], [], [], [], [], [], []
    try:
        for _ in range(passes):
            before = handoff()
            for key in totals:
                totals[key] = 0.0
            wrap(True)
            wrapped.append(run_steps())
            wrap(False)
            x_is_binary = getattr(engine._workspaces[B], "x_is_binary", True)
            parts = {key: v / steps for key, v in totals.items()}
            parts["other"] = wrapped[-1] - sum(parts.values())
            passes_parts.append(parts)
            real.append(run_steps())
            alone.append(replay(calls, steps))
            dense.append(replay(dense_calls, steps))
            engine.binary_input = False  # the same steps with every product in BLAS
            dense_real.append(run_steps())
            engine.binary_input = True
            handoffs.append((before, handoff()))
    finally:
        wrap(False)
    split = {key: statistics.median(p[key] for p in passes_parts) for key in passes_parts[0]}
    split["step_timed"] = statistics.median(wrapped)
    split["step"] = statistics.median(real)
    split["matmul_alone"] = statistics.median(alone)
    split["dense_alone"] = statistics.median(dense)
    split["step_over_matmul"] = ratio(real, alone)  # within each pass: median, min, max
    split["step_over_dense"] = ratio(real, dense)
    split["dense_step"] = statistics.median(dense_real)
    split["dense_step_over_dense"] = ratio(dense_real, dense)
    split["n_matmul"], split["n_dense"] = len(calls), len(dense_calls)
    # pass by pass, for the ratios by placement
    split["passes"] = {"step": real, "alone": alone, "dense": dense, "dense_step": dense_real,
                       "handoff": handoffs, "parts": passes_parts}
    if not x_is_binary:  # (the sums did not run: this numpyvae has none, or the data is not 0/1)
        split["binary"] = float("nan")
    return split


# --------------------------------------------------------------------------- subprocesses
FIRST_STEP = """
import time, sys
import numpy as np
from numpyvae.model import VAE
vae = VAE(backend="numba")
X = (np.random.default_rng(0).random((100, 784)) < 0.2).astype(np.float32)
vae.step(X)
print(time.time())
"""

EPOCH = """
import resource, time, sys
import numpy as np
from numpyvae.model import VAE
try:
    from numpyvae.data import iterate_batches, load_mnist
    images = load_mnist("train")[0]
except ImportError:
    import gzip
    with gzip.open(sys.argv[2]) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    def iterate_batches(images, B, rng, binarize):
        out = np.empty((B, 784), np.float32)
        order = rng.permutation(len(images))
        for s in range(0, len(images), B):
            x = out[: min(B, len(images) - s)]
            np.less(rng.random(x.shape, dtype=np.float32) * 255, images[order[s:s + B]], out=x)
            yield x
B = int(sys.argv[1])
vae = VAE(backend="numba")
rng = np.random.default_rng(0)
x = next(iter(iterate_batches(images, B, rng=rng, binarize="dynamic")))
vae.step(x)  # warm-up
sys.path.insert(0, sys.argv[3])  # benchmarks/: the same replay as the time split
import bench_train
calls = []  # one step's products: its own BLAS products; all in BLAS (no DENSE-5)
for binary in (True, False):
    vae.engine.binary_input = binary
    calls.append(bench_train.record_products(vae, x))
vae.engine.binary_input = True
# the epoch in chunks of CHUNK steps; after each, untimed for the epoch, the same number of
# steps' products replayed alone and the cores' hand-off: both sides under the same conditions
CHUNK = 50
seconds, alone, handoffs, n, total = 0.0, [0.0, 0.0], [], 0, 0.0
t = time.perf_counter()
for x in iterate_batches(images, B, rng=rng, binarize="dynamic"):
    total += vae.step(x)[0] * len(x)
    n += 1
    if n % CHUNK == 0:
        seconds += time.perf_counter() - t
        for i, c in enumerate(calls):
            alone[i] += bench_train.replay(c, CHUNK) * CHUNK
        handoffs.append(bench_train.handoff())
        t = time.perf_counter()
seconds += time.perf_counter() - t
if n % CHUNK:  # a last, shorter chunk
    for i, c in enumerate(calls):
        alone[i] += bench_train.replay(c, n % CHUNK) * (n % CHUNK)
try:  # this process's own peak; ru_maxrss would include the parent's RSS at fork (Linux exec)
    with open("/proc/self/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
except OSError:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, peak_kb, total / len(images), *alone, *handoffs)
"""


def run_child(code: str, cache_dir: str, *args) -> tuple[float, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return start, out


def first_step_latency(warm_runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as cache:
        start, out = run_child(FIRST_STEP, cache)
        cold = float(out.split()[-1]) - start
        warm = []
        for _ in range(warm_runs):
            start, out = run_child(FIRST_STEP, cache)
            warm.append(float(out.split()[-1]) - start)
    return {"cold": cold, "warm": statistics.median(warm)}


def epoch_run(B: int, cache_dir: str) -> dict[str, float]:
    mnist = ROOT.parent / "shared" / "data" / "mnist" / "train-images-idx3-ubyte.gz"
    _, out = run_child(EPOCH, cache_dir, B, mnist, Path(__file__).resolve().parent)
    seconds, maxrss_kb, loss, alone, dense, *handoffs = out.split()
    return {"seconds": float(seconds), "peak_rss_mb": int(maxrss_kb) / 1024, "loss": float(loss),
            "products_alone": float(alone), "dense_alone": float(dense),
            "handoffs": [float(h) for h in handoffs]}


def print_placements(res: dict) -> None:
    """The ratios again, over the passes whose cores were near and those whose cores were far
    (``handoff``, ``placement``): the host of a virtual machine may place its two cores in
    two core complexes (no shared L3) and move them while the benchmark runs."""
    tp, split, epoch = res.get("throughput_passes", {}), res["split"], res["epoch"]
    values = ([h for r in tp.values() for pair in r["handoff"] for h in pair]
              + [h for s in split.values() for pair in s["passes"]["handoff"] for h in pair]
              + epoch["handoffs"])
    values = [v for v in values if v == v]  # NaN: not measurable here
    if not values:
        print("\nThe hand-off between BLAS's threads could not be measured here (no OpenBLAS "
              "pthreads pool of two threads, or NUMPYVAE_BLAS_POOL=0): no ratios by placement.")
        return
    lowest = min(values)
    print("\n## By core placement\n")
    print(f"Before and after every pass, the time a cache line takes from one of BLAS's two "
          f"threads to the other (numpyvae.kernels.handoff): {lowest:.0f} to {max(values):.0f} "
          f"ns in this run. *near*: both within twice the run's lowest ({2 * lowest:.0f} ns), "
          f"the two cores share an L3 cache; *far*: both above; passes in which the host moved "
          f"a thread count in neither. Medians of the same per-pass ratios as above, with "
          f"the number of passes.\n")
    print("| batch | ratio | all passes | near | far |\n|---|---|---|---|---|")

    def cells(ratios: list[float], kinds: list[str]) -> list[str]:
        out = [f"{statistics.median(ratios):.2f} ({len(ratios)})"]
        for kind in ("near", "far"):
            sel = [r for r, k in zip(ratios, kinds, strict=True) if k == kind]
            out.append(f"{statistics.median(sel):.2f} ({len(sel)})" if sel else "-")
        return out

    for B, r in tp.items():
        kinds = [placement(list(pair), lowest) for pair in r["handoff"]]
        numba = r["seconds"]["numpyvae numba"]
        for name, label in (("PyTorch eager, Adam", "numba / torch"),
                            ("PyTorch eager, Adam(fused=True)", "numba / torch fused")):
            if name in r["seconds"]:
                ratios = [a / b for a, b in zip(r["seconds"][name], numba, strict=True)]
                print(f"| {B} | {label} | " + " | ".join(cells(ratios, kinds)) + " |")
    for B, s in split.items():
        p = s["passes"]
        kinds = [placement(list(pair), lowest) for pair in p["handoff"]]
        for top, key, label in (("step", "alone", "step / its products"),
                                ("step", "dense", "step / all in BLAS"),
                                ("dense_step", "dense", "step, sums off / all in BLAS")):
            if top not in p:  # (a --json of an older bench_train)
                continue
            ratios = [a / b for a, b in zip(p[top], p[key], strict=True)]
            print(f"| {B} | {label} | " + " | ".join(cells(ratios, kinds)) + " |")
    kinds = [placement([h], lowest) for h in epoch["handoffs"] if h == h]
    print(f"\nDuring the epoch (a hand-off after every 50 steps): near {kinds.count('near')}, "
          f"far {kinds.count('far')} of {len(kinds)}.")


def _gflops(f, flop: float, reps: int) -> float:
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return flop * reps / (time.perf_counter() - t) / 1e9


def matmul_rates(quick: bool) -> list[dict]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rows = []
    for M, K, N in [(100, 784, 500), (512, 512, 512) if quick else (2048, 2048, 2048)]:
        rng = np.random.default_rng(0)
        a, b = rng.random((M, K), dtype=np.float32), rng.random((K, N), dtype=np.float32)
        out = np.empty((M, N), np.float32)
        flop = 2.0 * M * K * N
        reps = max(2, int(2e9 / flop))
        row = {"shape": f"({M}x{K}) @ ({K}x{N})",
               "kernel": _gflops(lambda: kernels.matmul(a, b, out), flop, reps),  # noqa: B023
               "blas": _gflops(lambda: np.matmul(a, b, out=out), flop, reps)}  # noqa: B023
        if threadpool_limits is not None:
            with threadpool_limits(1, user_api="blas"):
                row["blas_1"] = _gflops(lambda: np.matmul(a, b, out=out), flop, reps)  # noqa: B023
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    passes, seconds = (2, 0.3) if args.quick else (7, 1.0)
    blas = blas_info()
    res: dict = {"cpu": cpu_name(), "cores": os.cpu_count(), "blas": blas,
                 "numpy": np.__version__, "python": platform.python_version(),
                 "idle_before": idle_fraction()}
    import numba
    res["numba"] = numba.__version__
    torch_note = None
    if args.no_torch:
        torch_note = "skipped (--no-torch)"
    else:
        try:
            import torch
            res["torch"] = torch.__version__
        except ImportError:
            torch_note = "skipped: torch is not installed (pip install torch)"
    flops = flops_per_image()
    res["flops_per_image"] = flops
    res["sgemm_2048_gflops"] = sgemm_rate(1024 if args.quick else 2048)

    print(f"# numpyvae training benchmark{' (--quick)' if args.quick else ''}\n")
    print(f"CPU: {res['cpu']}, {res['cores']} cores; BLAS: {blas['name']}, "
          f"{blas['threads']} threads; Python {res['python']}, NumPy {res['numpy']}, "
          f"Numba {res['numba']}" + (f", PyTorch {res['torch']} with torch.set_num_threads("
                                     f"{blas['threads']})" if "torch" in res else ""))
    print(f"Seed model 784-500-500-20 softplus, Bernoulli, Adam, float32: "
          f"{flops / 1e6:.2f} MFLOP per training image.\n")

    res["throughput"] = {}
    print("## Throughput (images/s, median of alternating passes; ratios: median of the "
          "ratios within each pass)\n")
    header = ["batch", "numpy", "numba", "torch Adam", "torch fused Adam",
              "numba / torch", "numba / torch fused", "numba GFLOP/s", "of 2048^2 rate"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for B in (32, 100, 512):
        batches = mnist_batches(B, 10)
        contenders = [Ours("numpy", batches), Ours("numba", batches)]
        if torch_note is None:
            t = Torch(batches, fused=False, threads=blas["threads"])
            res["torch_same_model_rel_diff"] = t.check_same_model()
            contenders += [t, Torch(batches, fused=True, threads=blas["threads"])]
        handoffs: list = []
        per_pass = time_contenders(contenders, passes, seconds, handoffs)
        ips = {name: B / statistics.median(ts) for name, ts in per_pass.items()}
        res["throughput"][B] = ips
        res.setdefault("throughput_passes", {})[B] = {"seconds": per_pass, "handoff": handoffs}
        numba_ips = ips["numpyvae numba"]
        cells = [str(B), f"{ips['numpyvae numpy']:.0f}", f"{numba_ips:.0f}"]
        if torch_note is None:
            ta, tf = ips["PyTorch eager, Adam"], ips["PyTorch eager, Adam(fused=True)"]
            ra = ratio(per_pass["PyTorch eager, Adam"], per_pass["numpyvae numba"])
            rf = ratio(per_pass["PyTorch eager, Adam(fused=True)"], per_pass["numpyvae numba"])
            res.setdefault("ratios", {})[B] = {"torch": ra, "torch_fused": rf}
            cells += [f"{ta:.0f}", f"{tf:.0f}", f"{ra[0]:.2f}x", f"{rf[0]:.2f}x"]
        else:
            cells += ["-", "-", "-", "-"]
        gflops = numba_ips * flops / 1e9
        cells += [f"{gflops:.1f}", f"{gflops / res['sgemm_2048_gflops']:.0%}"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nBLAS float32 2048^2 matrix product in this process: "
          f"{res['sgemm_2048_gflops']:.1f} GFLOP/s.")
    for B, r in res.get("ratios", {}).items():
        print(f"Batch {B}: numba / torch ranged {r['torch'][1]:.2f}x-{r['torch'][2]:.2f}x and "
              f"numba / torch fused {r['torch_fused'][1]:.2f}x-{r['torch_fused'][2]:.2f}x "
              f"over the {passes} passes.")
    if torch_note:
        print(f"PyTorch rows {torch_note}.")
    elif "torch_same_model_rel_diff" in res:
        print(f"Same model check: the first loss of PyTorch and numpyvae (same weights, same "
              f"eps) differ by {res['torch_same_model_rel_diff']:.1e} relative.")

    print("\n## Where a numba training step goes (ms per step, median)\n")
    print("Binarised batches: the first layer's two products are sums of rows (DENSE-5, "
          "column *0/1 sums*), so a step of the seed model makes 15 BLAS products; *all in "
          "BLAS* replays the 17 products the same step makes with those sums switched off "
          "(every product of the model, in BLAS). Times of the parts "
          "come from steps with a timing wrapper around every call (*timed step*); the "
          "ratios divide a step without wrappers by the products replayed alone, pass by "
          "pass (median, range). *Step, sums off*: the same steps with the sums switched off, "
          "every product in BLAS (slower, as the sums are faster than the two products they "
          "replace), against the same 17 products alone: the like-for-like ratio of that step."
          "\n")
    print("| batch | timed step | matmul | 0/1 sums | elementwise kernels | Adam | other "
          "(Python, eps) | step | its BLAS products alone | step / its products | all in BLAS "
          "alone | step / all in BLAS | step, sums off | step, sums off / all in BLAS |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    res["split"] = {}
    for B in (32, 100, 512):
        s = time_split(B, steps=10 if args.quick else 40, passes=passes)
        res["split"][B] = s
        if (s["n_matmul"], s["n_dense"]) != (15, 17):
            print(f"(this numpyvae makes {s['n_matmul']} products, {s['n_dense']} with the "
                  "sums off: the text above is of 0.4)")
        ms = {k: 1e3 * v for k, v in s.items() if isinstance(v, float)}
        r, rd, rs = s["step_over_matmul"], s["step_over_dense"], s["dense_step_over_dense"]
        print(f"| {B} | {ms['step_timed']:.2f} | {ms['matmul']:.2f} | {ms['binary']:.2f} | "
              f"{ms['elementwise']:.2f} | {ms['optimiser']:.2f} | {ms['other']:.2f} | "
              f"{ms['step']:.2f} | {ms['matmul_alone']:.2f} | {r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f}) "
              f"| {ms['dense_alone']:.2f} | {rd[0]:.2f} ({rd[1]:.2f}-{rd[2]:.2f}) | "
              f"{ms['dense_step']:.2f} | {rs[0]:.2f} ({rs[1]:.2f}-{rs[2]:.2f}) |")

    print("\n## Start-up, a full epoch, memory\n")
    lat = first_step_latency(warm_runs=1 if args.quick else 3)
    res["latency"] = lat
    with tempfile.TemporaryDirectory() as cache:
        run_child(FIRST_STEP, cache)  # fill the cache: the epoch measures training, not compiling
        epoch = epoch_run(100, cache)
    res["epoch"] = epoch
    print("| measure | value |\n|---|---|")
    print(f"| process start to first finished step, cold Numba cache | {lat['cold']:.2f} s |")
    print(f"| process start to first finished step, warm Numba cache | {lat['warm']:.2f} s |")
    print(f"| full MNIST epoch, 600 steps of 100 (dynamic binarisation included) | "
          f"{epoch['seconds']:.2f} s |")
    print(f"| the step's BLAS products replayed alone, 50 steps' worth after every 50 steps "
          f"of the epoch, same process | {epoch['products_alone']:.2f} s (epoch / products "
          f"{epoch['seconds'] / epoch['products_alone']:.2f}) |")
    print(f"| all its products in BLAS (no 0/1 sums) replayed alone, the same way | "
          f"{epoch['dense_alone']:.2f} s (epoch / products "
          f"{epoch['seconds'] / epoch['dense_alone']:.2f}) |")
    print(f"| peak resident memory of that training process (VmHWM) | "
          f"{epoch['peak_rss_mb']:.0f} MB |")

    print_placements(res)

    print("\n## Hand-written kernels.matmul (1 thread) against BLAS (GFLOP/s)\n")
    print("| shape | kernels.matmul | BLAS, 1 thread | BLAS, all threads |\n|---|---|---|---|")
    res["matmul"] = matmul_rates(args.quick)
    for row in res["matmul"]:
        print(f"| {row['shape']} | {row['kernel']:.1f} | {row.get('blas_1', float('nan')):.1f} "
              f"| {row['blas']:.1f} |")
    idle = res["idle_before"]
    if idle is not None:
        print(f"\nThe machine was {idle:.0%} idle in the 3 s before the run" + (
            "." if idle >= 0.9 else ": another process was running, and it competes with "
            "BLAS's threads for the cores; rerun on an idle machine."))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
