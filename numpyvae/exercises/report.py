"""The checker's table: one row per exercise, the diagnosis under it, and a summary by label."""

from __future__ import annotations

import textwrap

from .compare import CheckResult

ORDER = ("error", "wrong", "not started", "approximate", "exact")  # worst first


def label_status(results: list[CheckResult]) -> dict[str, str]:
    """label -> the worst status of its rows (ACT-6 has two, ADAM-3 and ADAM-4 share one)."""
    out: dict[str, str] = {}
    for r in results:
        for lab in r.label.split(", "):
            prev = out.get(lab)
            out[lab] = r.status if prev is None else min(prev, r.status, key=ORDER.index)
    return out


def summary(results: list[CheckResult]) -> str:
    statuses = list(label_status(results).values())
    n = len(statuses)
    parts = [f"{statuses.count(s)} {s}" for s in ORDER[::-1][1:] if statuses.count(s)]
    return f"{statuses.count('exact')} of {n} equations exact" + (
        f" ({', '.join(parts)})" if parts else "")


def table(results: list[CheckResult], import_errors: dict[str, str] | None = None) -> str:
    lines = [f"{'label':<16} {'function':<32} {'status':<12} {'max rel err':>11}",
             "-" * 74]
    for text in (import_errors or {}).values():
        lines.insert(0, f"cannot import: {text}")
    for r in results:
        err = "" if r.max_rel_error is None else f"{r.max_rel_error:.1e}"
        lines.append(f"{r.label:<16} {r.function:<32} {r.status:<12} {err:>11}".rstrip())
        if r.diagnosis and r.status != "not started" and r.mistake != "import":
            lines += textwrap.wrap(r.diagnosis, 96, initial_indent="    ",
                                   subsequent_indent="    ")
    lines += ["-" * 74, summary(results)]
    return "\n".join(lines)
