"""The benchmarks still run: each one's shortest mode, in a subprocess, on this machine.

They print tables and assert no speed (timings belong in benchmarks/README.md, not in tests);
what is checked is that they finish and print every table with a number in each timed cell.
Several reach into ``numpyvae.kernels.pool``'s argument rows to time floors and splits, so a
change there can break them silently: 0.4.2 changed the pooled Adam's argument rows and
``bench_parts.py``'s Adam floor then read a pointer as a length and crashed (a segmentation
fault), which nothing noticed until it was next run by hand.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
# as a user runs them: BLAS with two threads (conftest.py gives the tests' processes one)
THREADS = min(2, os.cpu_count() or 1)


def run(script: str, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(THREADS)}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, (f"{script} {' '.join(args)} exited with {proc.returncode}\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    # e.g. a model carried away to inf and NaN, which would also time the wrong arithmetic
    assert "RuntimeWarning" not in proc.stderr, proc.stderr[-3000:]
    return proc.stdout


def table(text: str, heading: str) -> list[list[str]]:
    """The rows of the Markdown table after the heading that starts with ``heading``."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    assert start is not None, f"no section {heading!r} in:\n{text[:3000]}"
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert len(rows) >= 2, f"section {heading!r} has no table rows"
    return rows[1:]  # without the header row


def number(cell: str) -> float:
    value = float(re.sub(r"[x,]", "", cell))
    assert math.isfinite(value) and value > 0, cell
    return value


def test_bench_parts_quick_prints_every_table():
    out = run("bench_parts.py", "--quick")
    adam = table(out, "## Adam")
    names = [row[0] for row in adam]
    assert "serial, fused.adam_step" in names and "floor, serial (same loads and stores)" in names
    if "kernels.pool: BLAS threads" in out:  # the pooled Adam and its floor (what crashed)
        assert any(name.startswith("floor, on BLAS's") for name in names), names
    for row in adam:
        number(row[1])
    for heading in ("## The elementwise kernels", "## The first layer on binarised MNIST",
                    "## The first layer at batch 100", "## A dynamically binarised batch",
                    "## What a call costs", "## The latent heads", "## Input gradients",
                    "## Vectorised?"):
        assert table(out, heading)
    for row in table(out, "## Input gradients"):
        assert row[-1] == "yes", row  # the transposed input gradient is bitwise the straight one


@pytest.mark.parametrize("script, args", [
    ("bench_adam_split.py", ("--seconds", "1", "--batch", "32")),
    ("cores.py", ("--seconds", "2")),
    ("bench_adam_context.py", ("--seconds", "2")),
])
def test_placement_benchmarks_run(script, args):
    if THREADS < 2:
        pytest.skip("needs two cores for BLAS's two threads (the scripts say so and exit 1)")
    out = run(script, *args)
    if script == "cores.py":
        for row in table(out, "## Medians by placement"):
            assert row[0] in ("near", "far", "changed"), row
            for cell in row[2:]:
                number(cell)
    elif script == "bench_adam_context.py":
        for row in table(out, "# Adam alone"):
            assert row[0] in ("near", "far", "changed"), row
            for cell in row[3:]:  # differences of two timings: finite, and may be tiny
                assert math.isfinite(float(cell)), row
    else:
        for row in table(out, "# FastAdam"):
            assert row[1] == "yes", row  # split by rows: the same bits as in halves
            assert row[2] in ("near", "far", "changed"), row


def test_bench_versions_compares_a_checkout_with_itself():
    """bench_versions.py trains in one process per checkout, taking turns: here this checkout
    twice, one pass (its table, not its ratio, is what is checked: a ratio of two passes of the
    same code is noise)."""
    out = run("bench_versions.py", str(ROOT), "--passes", "1", "--batch", "32")
    (row,) = table(out, "# ")
    assert row[0] == "32", row
    import numpyvae
    for cell in row[1:3]:
        version, ms = cell.split(", ")
        assert version == numpyvae.__version__, row
        number(ms)
    number(row[3].split()[0])


def test_bench_train_quick_prints_every_table():
    """The project's main benchmark, ``--quick --no-torch`` (about 50 s): it times steps with
    wrappers patched into ``numpyvae.fast`` and the pool, and replays recorded products."""
    out = run("bench_train.py", "--quick", "--no-torch")
    throughput = table(out, "## Throughput")
    assert [row[0] for row in throughput] == ["32", "100", "512"]
    for row in throughput:
        number(row[1]), number(row[2])  # numpy and numba images/s
    split = table(out, "## Where a numba training step goes")
    assert [row[0] for row in split] == ["32", "100", "512"]
    for row in split:
        for cell in row[1:]:
            value = cell.split()[0]
            if value != "-":
                assert math.isfinite(float(value)), row
    startup = dict(row[:2] for row in table(out, "## Start-up"))
    assert any(key.startswith("full MNIST epoch") for key in startup), startup
