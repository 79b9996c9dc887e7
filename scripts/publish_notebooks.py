"""Execute the course notebooks and publish copies with their outputs; keep the sources clean.

The notebooks in ``notebooks/`` are committed *without* outputs. This script

* runs each of them top to bottom (nbclient, a fresh kernel per notebook, working directory
  ``notebooks/`` as under ``pytest --nbmake``), in FULL mode by default or QUICK mode with
  ``--quick`` (``NUMPYVAE_QUICK=1``: fewer epochs and less data, the mode CI uses);
* writes the executed copy to ``docs/notebooks/NN_name.ipynb``, with a first cell that says
  which mode produced it, when, and with which versions, and with links into the repository
  adjusted for the new location; and, if nbconvert is installed, a static
  ``docs/notebooks/NN_name.html`` next to it;
* writes ``docs/notebooks/README.md``, an index of what was published;
* with ``--strip``, instead clears outputs, execution counts and run metadata from
  ``notebooks/*.ipynb`` in place (do this before committing); ``--check`` only reports
  notebooks that still carry outputs and exits 1 if there are any.

Kernels run with ``OPENBLAS_NUM_THREADS=1`` unless it is set (as under pytest, see
``conftest.py``): on a shared machine a threaded BLAS makes the timings of notebook 9 noise.
Each published copy's first cell records the setting.

Usage::

    python scripts/publish_notebooks.py --quick          # all notebooks, quick mode (~1-3 min)
    python scripts/publish_notebooks.py                  # full mode: trains for real (hours)
    python scripts/publish_notebooks.py --quick 04 08    # only notebooks whose names start so
    python scripts/publish_notebooks.py --strip          # clean notebooks/*.ipynb for a commit
    python scripts/publish_notebooks.py --check          # exit 1 if any source has outputs
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks"
PUBLISHED = ROOT / "docs" / "notebooks"
QUICK_ENV = "NUMPYVAE_QUICK"
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")  # per-cell run state


# --------------------------------------------------------------------------- sources
def notebooks(prefixes: list[str]) -> list[Path]:
    """notebooks/NN_*.ipynb in order, restricted to names starting with one of ``prefixes``."""
    found = sorted(SOURCE.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        found = [p for p in found if any(p.name.startswith(x) for x in prefixes)]
    if not found:
        raise SystemExit(f"no notebook in {SOURCE} matches {prefixes or 'NN_*.ipynb'}")
    return found


def has_outputs(nb) -> bool:
    return any(
        cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
        for cell in nb.cells
    ) or "widgets" in nb.metadata


def strip(nb):
    """Clear outputs, execution counts, widget state and per-cell run metadata, in place."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    return nb


def strip_sources(paths: list[Path], check_only: bool) -> int:
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if has_outputs(nb):
            dirty.append(path)
            if not check_only:
                nbformat.write(strip(nb), path)
    verb = "have outputs" if check_only else "stripped"
    for path in dirty:
        print(f"{verb}: {path.relative_to(ROOT)}")
    if not dirty:
        print(f"all {len(paths)} notebooks are clean (no outputs)")
    if check_only and dirty:
        print("fix: python scripts/publish_notebooks.py --strip")
        return 1
    return 0


# --------------------------------------------------------------------------- publishing
def relink(markdown: str) -> str:
    """Links relative to notebooks/ made relative to docs/notebooks/.

    ``../derivations/x.md`` becomes ``../../derivations/x.md``; links to sibling notebooks
    (``02_the_two_losses.ipynb``) stay, since their published copies sit side by side.
    """
    return re.sub(r"\]\(\.\./(?!\.\./)", "](../../", markdown)


def banner(path: Path, quick: bool, seconds: float) -> str:
    import numpy as np

    try:
        import numpyvae

        version = numpyvae.__version__
    except ImportError:  # publishing from a checkout without the package installed
        version = "(not installed)"
    if quick:
        mode = (f"**QUICK mode** (`{QUICK_ENV}=1`, what `pytest` uses): fewer epochs, less data "
                "and fewer samples, as the notebook's first cells say. Trained models here are "
                "barely trained; the checks (`assert`) are the same as in a full run.")
    else:
        mode = (f"**FULL mode** (`{QUICK_ENV}` unset): the epochs, data and sample sizes the "
                "notebook states for a real run.")
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"> **Published copy, with outputs.** Executed top to bottom in {mode}\n>\n"
        f"> Run on {today} in {seconds:.0f} s with numpyvae {version}, Python "
        f"{platform.python_version()}, NumPy {np.__version__} ({platform.machine()}, "
        f"{os.cpu_count()} cores, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}). The "
        f"source (no outputs) is [`notebooks/{path.name}`](../../notebooks/{path.name}); "
        f"regenerate with `python scripts/publish_notebooks.py{' --quick' if quick else ''}`."
    )


NUDGE_SECONDS = 30


def nudging_client(nb, **kwargs):
    """An nbclient ``NotebookClient`` that, while a cell has run for NUDGE_SECONDS, sends a
    harmless ``kernel_info`` request on the shell channel every NUDGE_SECONDS.

    Why: twice, notebook 6 (the latent space) in FULL mode stalled for good after its
    10-minute training cell, at the ipywidgets explorer cell. The kernel had finished the cell
    and was idle (checked with py-spy and a second client), and nbclient still waited for the
    execute reply on the shell channel: the reply had arrived but its poll never woke, as in
    jupyter/nbclient#312.
    Any later message on that channel wakes the poll, which then reads the waiting reply;
    the nudges' own replies carry another msg_id and nbclient skips them. While a cell is
    really running, the requests queue in the kernel and are answered after it.
    """
    import asyncio

    from nbclient import NotebookClient

    class NudgingClient(NotebookClient):
        _running_since: float | None = None
        nudges = 0

        async def async_execute_cell(self, cell, cell_index, *args, **kw):
            self._running_since = time.monotonic()
            try:
                return await super().async_execute_cell(cell, cell_index, *args, **kw)
            finally:
                self._running_since = None

        async def _nudge(self):
            while True:
                await asyncio.sleep(NUDGE_SECONDS)
                since = self._running_since
                if since is not None and self.kc is not None and \
                        time.monotonic() - since > NUDGE_SECONDS:
                    self.kc.kernel_info()
                    self.nudges += 1

        async def async_execute(self, **kw):
            task = asyncio.ensure_future(self._nudge())
            try:
                return await super().async_execute(**kw)
            finally:
                task.cancel()

    return NudgingClient(nb, **kwargs)


def execute(path: Path, quick: bool, timeout: int | None):
    """Run a copy of the notebook in a fresh kernel; returns (notebook, seconds)."""
    nb = strip(nbformat.read(path, as_version=4))
    client = nudging_client(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(SOURCE)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def publish(path: Path, quick: bool, timeout: int | None, html: bool) -> dict:
    print(f"{path.name}: running in {'QUICK' if quick else 'FULL'} mode ...", flush=True)
    nb, seconds = execute(path, quick, timeout)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = relink(cell.source)
    first = nbformat.v4.new_markdown_cell(banner(path, quick, seconds))
    first.id = "published-banner"
    nb.cells.insert(0, first)
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    out = PUBLISHED / path.name
    nbformat.write(nb, out)
    written = [out]
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        out_html = out.with_suffix(".html")
        out_html.write_text(body, encoding="utf-8")
        written.append(out_html)
    names = ", ".join(str(p.relative_to(ROOT)) for p in written)
    print(f"{path.name}: {seconds:.1f} s -> {names}")
    return {"name": path.name, "seconds": seconds, "html": html}


def write_index(rows: list[dict], quick: bool) -> None:
    """docs/notebooks/README.md: one line per published notebook (keeps earlier entries)."""
    index = PUBLISHED / "README.md"
    entries = {}
    if index.exists():  # keep notebooks published by earlier, partial runs (if they still exist)
        for line in index.read_text().splitlines():
            m = re.match(r"\| \[(\d\d_[^\]]+)\.ipynb\]", line)
            if m and (SOURCE / f"{m.group(1)}.ipynb").exists():
                entries[m.group(1)] = line
    mode = "QUICK" if quick else "FULL"
    for row in rows:
        stem = Path(row["name"]).stem
        html = f"[html]({stem}.html)" if row["html"] else "—"
        entries[stem] = (f"| [{stem}.ipynb]({stem}.ipynb) | {html} | {mode} | "
                         f"{row['seconds']:.0f} s |")
    lines = [
        "# Published notebooks",
        "",
        "Executed copies of [`notebooks/`](../../notebooks/), with outputs, written by "
        "`python scripts/publish_notebooks.py` (add `--quick` for quick mode). Each copy's first "
        "cell says which mode produced it. The sources in `notebooks/` carry no outputs.",
        "",
        "| notebook | static page | mode | run time |",
        "|---|---|---|---|",
        *[entries[k] for k in sorted(entries)],
        "",
    ]
    index.write_text("\n".join(lines), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 04 07 (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"quick mode ({QUICK_ENV}=1): shrunk epochs and data, as in CI")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds per cell before giving up (default: 600 quick, none full)")
    parser.add_argument("--no-html", action="store_true", help="skip the static HTML copies")
    parser.add_argument("--strip", action="store_true",
                        help="clear outputs of notebooks/*.ipynb in place and exit")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if any notebooks/*.ipynb has outputs")
    args = parser.parse_args(argv)
    paths = notebooks(args.only)
    if args.strip or args.check:
        return strip_sources(paths, check_only=args.check)

    os.environ[QUICK_ENV] = "1" if args.quick else "0"  # inherited by every kernel
    # one BLAS thread unless told otherwise: on a shared machine OpenBLAS's threads wait for
    # each other and timings (notebook 9) become noise; see conftest.py
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    timeout = args.timeout if args.timeout is not None else (600 if args.quick else None)
    html = not args.no_html
    if html:
        try:
            import nbconvert  # noqa: F401
        except ImportError:
            print("nbconvert is not installed: writing executed .ipynb copies only")
            html = False
    rows = [publish(path, args.quick, timeout, html) for path in paths]
    write_index(rows, args.quick)
    total = sum(r["seconds"] for r in rows)
    print(f"published {len(rows)} notebooks in {total:.0f} s of execution to "
          f"{PUBLISHED.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
