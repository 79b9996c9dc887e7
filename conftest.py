"""Repository-wide pytest setup: run the notebooks in quick mode, headless.

Set at import, before pytest collects anything, so that the kernels nbmake starts for
``notebooks/*.ipynb`` inherit them. ``setdefault``: an explicit ``NUMPYVAE_QUICK=0 pytest ...``
still runs the notebooks in full mode.
"""

import os

os.environ.setdefault("NUMPYVAE_QUICK", "1")  # notebooks shrink epochs and data (see each one)
os.environ.setdefault("MPLBACKEND", "Agg")  # no display needed, in tests or notebook kernels
# One BLAS thread. Our products are small (batch 100), and on a shared or busy 2-core machine
# OpenBLAS's spinning threads wait for each other: measured here, the notebooks took 132 s with
# the default threads and 51 s with one. Takes effect in every process started from here on
# (the notebook kernels), and in this one unless NumPy was imported before this file.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def pytest_configure(config) -> None:
    """Run the notebooks too (``--nbmake``) when nbmake is installed (the test extra has it).
    Without it pytest still runs every test in tests/ and says the notebooks were skipped,
    instead of failing on an unknown command-line option."""
    if hasattr(config.option, "nbmake"):
        config.option.nbmake = True
    else:
        config.issue_config_time_warning(
            UserWarning("nbmake is not installed: the notebooks were not run "
                        "(pip install -e '.[test]' installs it)"), stacklevel=2)
        return
    _poll_kernel_messages_in_slices()


def _poll_kernel_messages_in_slices(slice_seconds: float = 1.0) -> None:
    """Make a missed wake-up cost one second instead of the whole cell timeout.

    Seen on the project's machine (2026-12-06, jupyter_client 8.10, pyzmq 27.3, nbclient 0.11):
    in some full test runs one notebook took 300 s instead of a few: the kernel had run its
    cells and sat idle, pytest sat in nbclient waiting for the cell's reply, both in epoll (py-spy
    dumps), and after exactly nbmake's 300 s cell timeout the test went on and passed. That is a
    reply already waiting on the socket whose arrival the event loop never heard of: the poll
    only found it when its timeout ran out and it looked one last time. Waiting in slices of a
    second looks every second. Same results otherwise: a message, or ``Empty`` when ``timeout``
    seconds have passed (never, for ``timeout=None``). Only this test process is changed, and
    only if jupyter_client still has the method this replaces.
    """
    import time
    from queue import Empty

    try:
        from jupyter_client.channels import AsyncZMQSocketChannel
    except ImportError:
        return
    if not hasattr(AsyncZMQSocketChannel, "_recv"):
        return

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_seconds if deadline is None else max(0.0, deadline - time.monotonic())
            if await self.socket.poll(int(1000 * min(slice_seconds, left))):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    get_msg.__doc__ = AsyncZMQSocketChannel.get_msg.__doc__
    AsyncZMQSocketChannel.get_msg = get_msg
