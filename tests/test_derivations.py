"""Traceability: every labelled equation in derivations/ is implemented by a code line that
cites it and checked by a test that names it; nothing cites a label that does not exist.

Labels are defined in derivations/*.md as ``\\tag{KL-2}`` and cited as ``(KL-2)``.
Run ``python tests/test_derivations.py`` for the table of where each label is cited.
"""

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"\\tag\{([A-Z]+-\d+)\}")
CITE = re.compile(r"\(([A-Z]+-\d+)\)")


def defined_labels() -> list[str]:
    files = sorted((ROOT / "derivations").glob("*.md"))
    return [label for p in files for label in TAG.findall(p.read_text())]


def citations(folder: str, skip: str = "") -> dict[str, set[str]]:
    """label -> set of files under ``folder`` that cite it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.name == skip:
            continue
        for label in CITE.findall(path.read_text()):
            found.setdefault(label, set()).add(path.name)
    return found


def test_labels_are_unique():
    counts = Counter(defined_labels())
    assert counts, "no \\tag{...} labels found in derivations/"
    assert not [k for k, n in counts.items() if n > 1], f"labels defined twice: {counts}"


def test_every_label_is_tested_and_every_tested_label_exists():
    defined = set(defined_labels())
    tested = citations("tests", skip=Path(__file__).name)
    assert not defined - set(tested), f"labels no test names: {sorted(defined - set(tested))}"
    assert not set(tested) - defined, (
        f"tests cite labels that derivations/ does not define: {sorted(set(tested) - defined)}")


def test_every_label_is_implemented_and_every_cited_label_exists():
    defined = set(defined_labels())
    code = citations("numpyvae")
    assert not defined - set(code), f"labels no code line cites: {sorted(defined - set(code))}"
    assert not set(code) - defined, (
        f"code cites labels that derivations/ does not define: {sorted(set(code) - defined)}")


if __name__ == "__main__":
    code, tests = citations("numpyvae"), citations("tests", skip=Path(__file__).name)
    labels = defined_labels()
    for label in labels:
        print(f"{label:<8} code: {', '.join(sorted(code.get(label, ()))) or '-':<28} "
              f"tests: {', '.join(sorted(tests.get(label, ()))) or '-'}")
    print(f"{len(labels)} labels; {sum(lab in code for lab in labels)} cited in code; "
          f"{sum(lab in tests for lab in labels)} named by tests")
