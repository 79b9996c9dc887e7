"""Print numpyvae's module graph (who imports whom, top level or inside functions) and line counts.

    python scripts/module_graph.py [PACKAGE_DIR]

Used for the architecture notes; ``tests/test_architecture.py`` checks the same graph has no
cycles and no upward arrows.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def imports_of(root: Path, path: Path) -> set[str]:
    package = module_name(root, path).split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            names = [node.module] if node.module else [a.name for a in node.names]
            out.update(".".join([*base, n]) for n in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numpyvae."):
            out.add(node.module[len("numpyvae."):])
    return out


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "numpyvae"
    graph: dict[str, set[str]] = {}
    lines: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        mod = module_name(root, path)
        top = mod.split(".")[0]
        graph.setdefault(top, set()).update(d.split(".")[0] for d in imports_of(root, path))
        graph[top].discard(top)
        lines[mod] = len(path.read_text(encoding="utf-8").splitlines())
    cycles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                     if a in graph.get(b, set())})
    for mod in sorted(graph):
        print(f"{mod:<12} -> {', '.join(sorted(graph[mod])) or '-'}")
    print("two-way imports (cycles):", ", ".join(f"{a} <-> {b}" for a, b in cycles) or "none")
    print("\nlines per file:")
    for mod, n in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {mod.replace('.', '/')}.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
