"""``numpyvae exercises start DIR`` and ``numpyvae exercises check [DIR] [--only LABEL]``.

``add_arguments(parser)`` adds the two sub-sub-commands to the parser ``numpyvae/cli.py`` makes
for ``exercises``; ``main(args)`` runs the chosen one. ``python -m numpyvae.exercises.cli``
works on its own too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..argtypes import positive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="exercises_command", metavar="{start,check}")
    sub.required = True
    start = sub.add_parser("start", help="write the stubs, the exercise notebooks and a README "
                           "into DIR")
    start.add_argument("dir", type=Path, help="the folder to work in, e.g. ~/vae-course")
    start.add_argument("--force", action="store_true",
                       help="overwrite existing files (your work in them is lost)")
    check = sub.add_parser("check", help="grade every equation; train your VAE when all pass")
    check.add_argument("dir", type=Path, nargs="?", default=Path("."),
                       help="the workspace (default: the current folder)")
    check.add_argument("--only", metavar="LABEL", help="check one equation, e.g. KL-3")
    check.add_argument("--images", type=positive(int), default=2000,
                       help="MNIST images for the short training (default 2000)")
    check.add_argument("--epochs", type=positive(int), default=3,
                       help="epochs of the short training (default 3)")


def _start(args) -> int:
    from .workspace import start

    written, existing = start(args.dir, force=args.force)
    if existing:
        print(f"{args.dir} already has: {', '.join(existing)}\nNothing was written. To "
              f"overwrite them (your work in them is lost): numpyvae exercises start "
              f"{args.dir} --force", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} files into {args.dir}: {', '.join(written)}\n"
          f"next: cd {args.dir}, read README.txt, and run: numpyvae exercises check")
    return 0


def _check(args) -> int:
    from . import assemble, report
    from .checker import check_workspace, labels

    if args.only is not None and args.only not in labels():
        print(f"no exercise for {args.only!r}; labels: {', '.join(labels())}", file=sys.stderr)
        return 2
    results, modules, errors = check_workspace(args.dir, only=args.only)
    print(report.table(results, errors))
    if args.only is not None:
        return 0 if all(r.passed for r in results) else 1
    waiting = assemble.missing(results)
    if waiting:
        print(f"\nYour VAE trains once these pass too: {', '.join(waiting)}")
        return 1
    print()
    run = assemble.train_yours(modules, n_images=args.images, epochs=args.epochs)
    print(run.table())
    return 1 if run.failure else 0


def main(args: argparse.Namespace) -> int:
    return _start(args) if args.exercises_command == "start" else _check(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="numpyvae exercises",
                                     description="write the VAE's maths yourself, and check it")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
