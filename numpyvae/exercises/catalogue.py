"""The catalogue of classic mistakes, and where in ``derivations/`` to reread for each label.

A mistake is recognised, not guessed: each ``Mistake`` carries a *variant*, the reference's
computation deliberately broken in one known way (a flipped sign, the variance used as the
standard deviation, ...). If the student's output equals a variant's output on every check
case, the checker names that mistake. Mistakes that are a constant factor away from the
reference (a sign, a missing 1/2, a mean where a sum belongs) are recognised by ``scale_mistake``
without a variant: the factor is fitted and named after the case's dimensions (B, D, J).

Each exercise module (``rows_*.py``) lists the mistakes of its equations; this module holds the
shared vocabulary: the sections to reread and the generic diagnoses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

LAYERS, BER, GAU = "layers.md", "bernoulli.md", "gaussian.md"
REP, KL, INIT, ADAM, ELBO = ("reparameterization.md", "kl.md", "init.md", "adam.md",
                             "elbo.md")
IS, IWAE = "importance_sampling.md", "iwae_training.md"
SOFTPLUS = (LAYERS, "Softplus (the network's hidden activation)")
REP_BACKWARD = (REP, "Step 3: the backward pass of (REP-1)")

SECTIONS: dict[str, tuple[str, str]] = {
    "DENSE-1": (LAYERS, "Forward"), "DENSE-2": (LAYERS, "Backward"),
    "DENSE-3": (LAYERS, "Backward"), "DENSE-4": (LAYERS, "Backward"),
    "ACT-1": SOFTPLUS, "ACT-2": SOFTPLUS, "ACT-3": (LAYERS, "Sigmoid"),
    "ACT-4": (LAYERS, "Sigmoid"), "ACT-5": (LAYERS, "Tanh"), "ACT-6": (LAYERS, "ReLU"),
    "BER-2": (BER, "Step 3: one softplus instead of two"), "BER-3": (BER, "Step 4: the gradient"),
    "GAU-1": (GAU, "Step 1: the negative log-density"),
    "GAU-2": (GAU, "Step 2: gradient with respect to the mean"),
    "GAU-3": (GAU, "Step 3: gradient with respect to the log-variance"),
    "GAU-4": (GAU, r"Step 4: a log-variance that cannot fall below $\log \sigma^2_{\min}$"),
    "GAU-5": (GAU, "Step 5: its gradient"),
    "GAU-6": (GAU, "Step 6: a log-variance that does not depend on $z$"),
    "REP-1": (REP, "Step 1: move the randomness out of the parameters"),
    "REP-2": REP_BACKWARD, "REP-3": REP_BACKWARD,
    "KL-1": (KL, "Step 2: J independent dimensions"), "KL-2": (KL, "Gradients"),
    "KL-3": (KL, "Gradients"),
    "INIT-1": (INIT, "Step 4: solve for the range"),
    "INIT-2": (INIT, "He (Kaiming) uniform: the alternative for ReLU networks"),
    "ADAM-1": (ADAM, "The update"), "ADAM-2": (ADAM, "The update"),
    "ADAM-3": (ADAM, "Derivation of the bias correction (ADAM-3)"), "ADAM-4": (ADAM, "The update"),
    "SGD-1": (ADAM, "Motivation"),
    "ELBO-3": (ELBO, "From one example to a batch"),
    "IWAE-2": (IS, "The log-mean-exp"), "IWAE-4": (IWAE, "The IWAE"),
    "IWAE-5": (IWAE, "The normalised importance weights"), "IWAE-6": (IWAE, "Down to every term"),
}
"""label -> (file in derivations/, heading of the section that derives it)."""

NUMERICS = {"ACT-1": SOFTPLUS, "BER-2": (BER, "Numerical notes: why not `log(p + 1e-10)`"),
            "KL-1": (KL, "Numerical notes")}
TWO_PATHS = (REP, "Step 4: add the KL path")


@dataclasses.dataclass(frozen=True)
class Mistake:
    """One classic mistake: ``variant(case)`` is what the reference computes with it made.

    ``stress``: a numerical mistake that only shows on the extreme inputs of stress cases (an
    overflow, lost precision); ``status``: what the row says when it is recognised; ``cache``:
    a forward's right output with a wrong cache, ``variant(case)`` being that cache.
    """

    key: str
    title: str
    why: str
    variant: Callable | None = None
    stress: bool = False
    status: str = "wrong"
    section: tuple[str, str] | None = None
    cache: bool = False


def reread(label: str, section: tuple[str, str] | None = None) -> str:
    file, heading = section or SECTIONS[label]
    return f'Reread derivations/{file}, "{heading}".'


def diagnosis(label: str, mistake: Mistake, detail: str = "") -> str:
    """The text of a recognised mistake: label, what, why, where to reread."""
    detail = f" ({detail})" if detail else ""
    why = mistake.why if mistake.why.endswith((".", "!", "?")) else mistake.why + "."
    return f"({label}) {mistake.title}{detail}: {why} {reread(label, mistake.section)}"


DIM_NAMES = {"B": "the batch size B", "D": "the number of pixels D",
             "J": "the number of latent units J", "H": "the number of hidden units H",
             "k": "the number of samples k"}


def _close(x: float, y: float) -> bool:
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y))


def _name_factor(factors: list[float], dims: list[dict]) -> Mistake | None:
    """Name the factor c with student = c * reference, one c per case."""
    if all(_close(c, -1.0) for c in factors):
        return Mistake("sign", "flipped sign", "your result is minus the reference; check the "
                       "sign of each term of the derivative")
    for dim, name in DIM_NAMES.items():
        if not all(dim in d for d in dims):
            continue
        if all(_close(c, 1.0 / d[dim]) for c, d in zip(factors, dims, strict=True)):
            return Mistake(f"mean-over-{dim}", f"a mean where a sum belongs (divided by {dim})",
                           f"your result is the reference divided by {name}; this sum runs "
                           f"over {dim} without dividing by it")
        if dim != "k" and all(_close(c, d[dim]) for c, d in zip(factors, dims, strict=True)):
            return Mistake(f"sum-over-{dim}", f"a sum where a mean belongs (times {dim})",
                           f"your result is the reference times {name}; the batch loss is a "
                           "mean over examples, so each example's gradient carries 1/B "
                           "(ELBO-3)")
    if all(_close(c, 2.0) for c in factors):
        return Mistake("half-missing", "a missing 1/2", "your result is exactly twice the "
                       "reference; a factor 1/2 of the derivation is missing")
    if all(_close(c, 0.5) for c in factors):
        return Mistake("extra-half", "an extra 1/2", "your result is exactly half the "
                       "reference; a factor 1/2 appears where the derivation has none")
    if all(_close(c, factors[0]) for c in factors):
        return Mistake("factor", f"off by a constant factor {factors[0]:.6g}",
                       "your result is the reference times this constant")
    return None


def scale_mistake(student: list[np.ndarray], reference: list[np.ndarray], dims: list[dict],
                  error: Callable, tol: float) -> Mistake | None:
    """The mistake that makes ``student`` a constant multiple of ``reference`` on every case."""
    factors = []
    for s, r in zip(student, reference, strict=True):
        rr = float(np.vdot(r, r))
        if rr == 0.0 or s.shape != r.shape or not np.isfinite(s).all():
            return None
        c = float(np.vdot(s, r)) / rr
        if _close(c, 1.0) or error(s, c * r) > tol:
            return None
        factors.append(c)
    return _name_factor(factors, dims)


def shape_mistake(expected: tuple, received: tuple, names: dict[str, int]) -> Mistake:
    """A wrong shape, named: transposed, or reduced over the wrong axis."""
    if len(expected) == 2 and received == expected[::-1]:
        return Mistake("transposed", "transposed", f"expected shape {expected}, received "
                       f"{received}: a product with its factors transposed gives the "
                       "transpose; check the shapes of each factor")
    if (len(expected) == len(received) == 2 and received[0] == received[1]
            and expected[0] != expected[1] and received[0] in expected):
        return Mistake("matmul-not-elementwise", "a matrix product where an elementwise one "
                       "belongs", f"expected shape {expected}, received {received}: the chain "
                       "rule through an elementwise function multiplies entry by entry (*), "
                       "not with @")
    if len(expected) == 1 and len(received) == 2 and received[0] == expected[0]:
        return Mistake("sum-missing", "the sum over units missing", f"expected shape "
                       f"{expected}, one number per example, received {received}: sum the "
                       "per-unit terms over axis 1")
    if len(expected) == len(received) == 1:
        which = [k for k, v in names.items() if v == received[0]]
        return Mistake("wrong-axis", "summed over the wrong axis", f"expected shape "
                       f"{expected}, received {received}" + (f" ({which[0]})" if which else "")
                       + ": sum over the other axis")
    return Mistake("shape", "wrong shape", f"expected shape {expected}, received {received}")


def nonfinite_mistake(s: np.ndarray, r: np.ndarray, case_name: str) -> Mistake | None:
    """NaN or inf where the reference is finite: say where."""
    bad = ~np.isfinite(s) & np.isfinite(r)
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    kind = "NaN" if np.isnan(s[where]) else "inf"
    return Mistake("nan", f"{kind} in the output", f"{kind} at index {where} ({int(bad.sum())} "
                   f"of {bad.size} entries) with inputs {case_name}, where the reference is "
                   f"{r[where]:.6g}: an exp that overflows, a log of 0 or 0/0; use the stable "
                   "form of the derivation")


def describe(value) -> str:
    """A short description of what a function returned: "array (4, 3)", "tuple of 2: ..."."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"array {value.shape}"
    if isinstance(value, tuple | list):
        inner = ", ".join(describe(v) for v in value[:4])
        return f"{type(value).__name__} of {len(value)}: {inner}"
    if isinstance(value, float | int | np.floating):
        return f"the number {value!r}"
    return type(value).__name__
