"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file numpyvae writes (checkpoints, history, figures, downloads) goes through
``atomic_write``: the bytes go to a temporary file in the destination's directory, which is
flushed and fsynced, given ordinary permissions (0666 less the umask; ``mkstemp`` would leave
0600), and renamed over the destination; then the directory is fsynced so the rename itself
survives a crash. On any error, or a signal, the temporary file is removed and the old file
stays as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """``with atomic_write(path) as f: f.write(...)`` replaces ``path`` only if the block succeeds.

    ``mode`` is "wb" or "w". Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsynced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
