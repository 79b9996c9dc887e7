"""Exercises: the course students *do*. Stubs of every labelled equation, and a checker that
says, per equation, *not started*, *error*, *wrong*, *approximate* or *exact*, and when wrong,
which classic mistake it recognises and which section of ``derivations/`` to reread.

    numpyvae exercises start ~/vae-course       # the stubs, the exercise notebooks, a README
    numpyvae exercises check ~/vae-course       # one row per equation; then your VAE trains

From a notebook cell: ``numpyvae.exercises.check("KL-3", my_kl_backward)`` returns a
``CheckResult`` (``.passed``, ``.status``, ``.max_rel_error``, ``.diagnosis``).

Layout: ``markers`` (the solution-region convention) and ``generate`` (stubs from the
reference code and notebooks); ``compare`` (grading one function), ``catalogue`` (the
mistakes), ``rows_*`` (the exercises of each derivation); ``checker`` (a workspace, or one
function); ``assemble`` (your VAE trains); ``workspace`` (``start``); ``cli``.
"""

from .checker import EXERCISES, check, check_workspace, labels
from .compare import CheckResult

__all__ = ["check", "check_workspace", "CheckResult", "EXERCISES", "labels"]
