"""The project's own exceptions.

Each subclasses a built-in so callers can catch it the ordinary way: a malformed file or a
diverged run is a ``ValueError``; a file that cannot be found or read at all is an ``OSError``.
Every message says what was wrong, what was expected, and how to fix it.
"""

from __future__ import annotations


class DataFileError(ValueError):
    """A data file exists but is malformed: bad magic, lying header, truncated, bad checksum."""


class DataNotFoundError(FileNotFoundError):
    """A data set is not on this machine (and could not be fetched)."""


class CheckpointError(ValueError):
    """A checkpoint is truncated, corrupted, foreign, of another architecture or format version."""


class DivergenceError(ValueError):
    """The loss became NaN or inf during training."""
