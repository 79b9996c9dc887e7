"""Solution regions and how they are stripped: one source, two versions (nbgrader's convention).

Python (``.py`` files and notebook code cells)::

    def kl_standard_normal_backward(dkl, cache):
        mu, logvar = cache
        ### BEGIN SOLUTION
        ### HINT: each row is scaled by its example's dkl; differentiate in mu and in logvar
        g = dkl[:, None]
        dmu = g * mu  # (KL-2)
        dlogvar = g * 0.5 * np.expm1(logvar)  # (KL-3)
        ### END SOLUTION
        return dmu, dlogvar

becomes, in the student's version::

        mu, logvar = cache
        raise NotImplementedError("(KL-2), (KL-3): each row is scaled by its example's dkl; ...")
        return dmu, dlogvar

The marker lines are comments, so the solution runs unchanged. Rules: ``### BEGIN SOLUTION`` and
``### END SOLUTION`` stand alone on their lines, at the indentation of the code they enclose;
regions do not nest. Lines ``### HINT: text`` right after BEGIN are the one-line hint (several
consecutive HINT lines are joined with spaces). The message of the ``raise`` is the labels that
the region's code lines cite as ``# (LABEL)`` (those the hint does not already name), a colon,
and the hint. Lines outside regions (the unpacking of a cache, the ``return``) stay: they tell
the student which names to define. A region belongs inside a function, so that a notebook with
stubs still runs from top to bottom and the check cells can say *not started*.

Markdown cells of notebooks use invisible HTML comments instead, since ``###`` is a heading
there: ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` on their own lines. The region
becomes ``*Your answer here.*``. (nbgrader marks whole answer cells with cell metadata; markers in
the text keep the question and the answer in one cell, and diff well.)
"""

from __future__ import annotations

import copy
import re

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
MD_ANSWER = "*Your answer here.*"
CITE = re.compile(r"\(([A-Z]+-\d+)\)")


class MarkerError(ValueError):
    """Unbalanced or misplaced solution markers; the message names the source and the line."""


def _literal(text: str) -> str:
    """A double-quoted Python string literal of ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stub_message(region: list[str]) -> str:
    """The message of the ``raise`` that replaces a region (its lines without the markers)."""
    hints = [ln.strip()[len(HINT):].strip() for ln in region if ln.strip().startswith(HINT)]
    hint = " ".join(hints) or "fill in this part"
    labels: list[str] = []
    for line in region:
        if not line.strip().startswith(HINT):
            labels += [lab for lab in CITE.findall(line) if lab not in labels]
    missing = [f"({lab})" for lab in labels if f"({lab})" not in hint]
    return f"{', '.join(missing)}: {hint}" if missing else hint


def _regions(lines: list[str], begin: str, end: str, where: str):
    """Yield (kind, payload): ("line", text) outside regions, ("region", (indent, lines))."""
    start, body = None, []
    for number, line in enumerate(lines, start=1):
        mark = line.strip()
        if mark == begin:
            if start is not None:
                raise MarkerError(f"{where}, line {number}: {begin} inside the region opened "
                                  f"at line {start}; close it with {end} first")
            start, body, indent = number, [], line[: len(line) - len(line.lstrip())]
        elif mark == end:
            if start is None:
                raise MarkerError(f"{where}, line {number}: {end} without a {begin} before it")
            yield "region", (indent, body)
            start = None
        elif start is not None:
            if mark.startswith(HINT) and any(not b.strip().startswith(HINT) for b in body):
                raise MarkerError(f"{where}, line {number}: {HINT} lines go right after {begin}")
            body.append(line)
        else:
            if mark.startswith(HINT):
                raise MarkerError(f"{where}, line {number}: {HINT} outside a solution region")
            yield "line", line
    if start is not None:
        raise MarkerError(f"{where}, line {start}: {begin} is never closed by {end}")


def strip_python(text: str, where: str = "<source>") -> str:
    """The student's version of Python source ``text``: each region becomes a ``raise``."""
    out = []
    for kind, payload in _regions(text.split("\n"), BEGIN, END, where):
        if kind == "line":
            out.append(payload)
        else:
            indent, body = payload
            out.append(f"{indent}raise NotImplementedError({_literal(stub_message(body))})")
    return "\n".join(out)


def strip_markdown(text: str, where: str = "<markdown>") -> str:
    """The student's version of a markdown cell: each region becomes ``*Your answer here.*``."""
    out = []
    for kind, payload in _regions(text.split("\n"), MD_BEGIN, MD_END, where):
        out.append(payload if kind == "line" else MD_ANSWER)
    return "\n".join(out)


def has_markers(text: str) -> bool:
    return any(ln.strip() in (BEGIN, MD_BEGIN) for ln in text.split("\n"))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def notebook_has_markers(nb: dict) -> bool:
    return any(has_markers(_source(cell)) for cell in nb.get("cells", []))


def strip_notebook(nb: dict, where: str = "<notebook>") -> dict:
    """The student's version of a notebook (a JSON dict): regions stripped, outputs cleared."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.get("cells", [])):
        text, here = _source(cell), f"{where}, cell {i}"
        if cell.get("cell_type") == "code":
            text = strip_python(text, here)
            cell["outputs"], cell["execution_count"] = [], None
            cell.get("metadata", {}).pop("execution", None)
        elif cell.get("cell_type") == "markdown":
            text = strip_markdown(text, here)
        lines = text.split("\n")
        cell["source"] = [ln + "\n" for ln in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return nb
