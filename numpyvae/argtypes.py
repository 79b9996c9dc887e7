"""Argument types shared by the ``numpyvae`` sub-commands (``cli``, ``demo``, ``exercises``)."""

from __future__ import annotations

import argparse


def _number(kind, strict: bool):
    """An argparse type: ``kind`` (int or float) that is > 0 (``strict``) or >= 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not (value > 0 if strict else value >= 0):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} 0, got {text}")
        return value

    parse.__name__ = f"{'positive' if strict else 'non-negative'} {kind.__name__}"
    return parse


def positive(kind):
    return _number(kind, strict=True)


def non_negative(kind):
    return _number(kind, strict=False)


def variance_floor(text: str):
    """--var-floor: a positive variance, "none" (no floor) or "auto" (the 8-bit default)."""
    if text in ("none", "auto"):
        return None if text == "none" else "auto"
    value = _number(float, strict=True)(text)
    if value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite variance, got {text}")
    return value


variance_floor.__name__ = "variance floor"
