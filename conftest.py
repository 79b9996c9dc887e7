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
