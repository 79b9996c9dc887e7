"""Grading one exercise: run the student's function on seeded cases, compare, diagnose.

Statuses, in the spirit of backprop-ninja's ``cmp()``:

    not started   the stub still raises NotImplementedError
    error         the code raised an exception (its traceback, trimmed to the student's
                  lines, is the diagnosis), or its file does not import
    wrong         the output differs from the reference by more than a gradient check's
                  tolerance (1e-6 relative), or has the wrong shape or structure
    approximate   within 1e-6 relative: right maths, a different rounding (or a numerically
                  weaker form the catalogue marks as approximate)
    exact         within 1e-12 relative in float64: the reference's result

Relative error is ``gradcheck.relative_error``: the worst entry's error against the tensor's
scale. The student's code never crashes the checker: everything it does runs inside
``_call``, which turns any exception into a result.
"""

from __future__ import annotations

import copy
import dataclasses
import sysconfig
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..gradcheck import DEFAULT_TOL, relative_error
from .catalogue import (
    Mistake,
    describe,
    diagnosis,
    nonfinite_mistake,
    reread,
    scale_mistake,
    shape_mistake,
)

EXACT_TOL = 1e-12
APPROX_TOL = DEFAULT_TOL
PASSING = ("exact", "approximate")
HERE = str(Path(__file__).resolve().parent)
HIDDEN = (HERE, str(Path(np.__file__).resolve().parent), sysconfig.get_paths()["stdlib"])


@dataclasses.dataclass
class Case:
    """Seeded float64 inputs of one check; ``dims`` names the sizes (B, D, J, ...)."""

    name: str
    arrays: dict
    dims: dict
    stress: bool = False
    segments: dict[str, slice] | None = None  # per-parameter slices of a flat output

    def args(self) -> dict:
        return copy.deepcopy(self.arrays)  # fresh copies: in-place student code changes nothing


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One row of the checker: a label, the function that implements it, how to check it.

    ``run(fn, a)`` calls a function with the reference's signature on the case's arrays ``a``
    and returns its raw result; ``returns`` names the tuple it returns (or None for an array),
    ``output`` the element checked. For a forward, ``backward(cache, a)`` is the reference
    backward that reads its cache: the student's cache must give it the same gradients.
    ``part`` names the output in the row when one label has several rows of one function
    (IWAE-6: dz and dlogvar of ``log_prior_ratio_backward``).
    """

    labels: tuple[str, ...]
    module: str
    function: str
    output: str
    cases: Callable[[], list[Case]]
    run: Callable
    reference: Callable[[], object]
    returns: tuple[str, ...] | None = None
    backward: Callable | None = None
    mistakes: tuple[Mistake, ...] = ()
    part: str = ""  # the output's name, when one function has several rows of one label

    @property
    def label(self) -> str:
        return ", ".join(self.labels)

    @property
    def name(self) -> str:
        """The row's name: the function, and the output if the row has a ``part``."""
        return f"{self.function} {self.part}" if self.part else self.function


@dataclasses.dataclass
class CheckResult:
    """The grade of one exercise; ``str()`` names the label, the status and the diagnosis."""

    label: str
    function: str
    status: str
    max_rel_error: float | None = None
    diagnosis: str = ""
    mistake: str | None = None  # key of the recognised catalogue entry, if any

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    def __str__(self) -> str:
        err = "" if self.max_rel_error is None else f", max relative error {self.max_rel_error:.1e}"
        text = f"({self.label}) {self.function}: {self.status}{err}"
        return text + (f"\n    {self.diagnosis}" if self.diagnosis else "")


class _Failure(Exception):
    """The student's code did not return a usable result: ``result`` says why."""

    def __init__(self, status: str, text: str, mistake: str | None = None):
        super().__init__(text)
        self.status, self.text, self.mistake = status, text, mistake


def trimmed_traceback(err: BaseException) -> str:
    """The exception's traceback on one line, without the frames of the checker, NumPy and the
    standard library: what is left is the student's code (and any numpyvae op it called)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith(HIDDEN)]
    lines = [f"{Path(f.filename).name}, line {f.lineno}, in {f.name}: {(f.line or '').strip()}"
             for f in frames]
    return "; ".join(lines + [f"{type(err).__name__}: {err}"])


def _is_shape_error(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, ValueError) and any(
        k in text for k in ("matmul", "broadcast", "shapes", "core dimension", "aligned"))


def _call(ex: Exercise, fn, case: Case):
    """The student's raw result on ``case``, or a _Failure saying what went wrong."""
    a = case.args()
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ex.run(fn, a)
    except NotImplementedError as err:
        raise _Failure("not started", f"still raises NotImplementedError: {err}") from None
    except Exception as err:  # any bug in the student's code becomes a row, never a crash
        if _is_shape_error(err):
            shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in case.arrays.items()
                               if isinstance(v, np.ndarray))
            matmul = "matmul" in str(err) or "aligned" in str(err)
            what = ("a transposed product (shapes that do not line up)" if matmul else
                    "a shape error (arrays that do not broadcast)")
            raise _Failure("wrong", f"({ex.labels[0]}) {what}: {trimmed_traceback(err)}. The "
                           f"inputs were {shapes}; the expected {ex.output} has the shape of "
                           f"its variable. " + reread(ex.labels[0]),
                           "transposed" if matmul else "shape-error") from None
        raise _Failure("error", f"raised {trimmed_traceback(err)}") from None


def _pick(ex: Exercise, result, which: str):
    """The checked array from a raw result, or a _Failure naming the expected structure."""
    if isinstance(result, dict):  # the optimisers' trajectories, recorded by the checker
        result = result[which]
    elif ex.returns is not None:
        if not isinstance(result, tuple | list) or len(result) != len(ex.returns):
            raise _Failure("wrong", f"({ex.labels[0]}) returned {describe(result)}; expected "
                           f"a tuple ({', '.join(ex.returns)})", "structure")
        result = result[ex.returns.index(which)]
    if result is None:
        raise _Failure("wrong", f"({ex.labels[0]}) {which} is None; expected an array",
                       "structure")
    try:
        return np.array(result, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Failure("wrong", f"({ex.labels[0]}) {which} is {describe(result)}, not an "
                       "array of numbers", "structure") from None


def _error(s: np.ndarray, r: np.ndarray, case: Case) -> float:
    """Relative error; per parameter (the worst) when the output is a flat parameter buffer."""
    if s.shape != r.shape:
        return float("inf")
    fs, fr = np.isfinite(s), np.isfinite(r)
    if (fs != fr).any() or not np.array_equal(s[~fs], r[~fr], equal_nan=True):
        return float("inf")  # NaN or inf in one but not the other, or different ones
    s, r = np.where(fs, s, 0.0), np.where(fr, r, 0.0)
    if case.segments is None:
        return relative_error(s, r)
    return max(relative_error(s[sl], r[sl]) for sl in case.segments.values())


def _cache_works(ex: Exercise, mine, ref, case: Case) -> bool:
    """Does the reference backward give the same gradients from the student's cache?"""
    try:
        with np.errstate(all="ignore"):
            got, want = ex.backward(mine, case.args()), ex.backward(ref, case.args())
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        return len(got) == len(want) and all(
            (g is None and w is None) or relative_error(np.asarray(g), w) <= 1e-9
            for g, w in zip(got, want, strict=True))
    except Exception:  # whatever the student cached, the backward could not use it
        return False


def _match(ex: Exercise, outputs: dict, cases: list[Case], stress: bool) -> Mistake | None:
    """The first catalogue mistake whose variant equals the student's output on every case."""
    for mistake in ex.mistakes:
        if mistake.variant is None or mistake.stress != stress or mistake.cache:
            continue
        chosen = [c for c in cases if c.stress == stress] if stress else cases
        ok = True
        for case in chosen:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = np.asarray(mistake.variant(case.args()), dtype=np.float64)
            s = outputs[case.name]
            if s.shape != v.shape or _error(s, v, case) > APPROX_TOL:
                ok = False
                break
        if ok:
            return mistake
    return None


def _explain_wrong(ex: Exercise, outs: dict, refs: dict, cases: list[Case]) -> CheckResult:
    label = ex.labels[0]
    for case in cases:  # a wrong shape first: nothing else can be compared
        s, r = outs[case.name], refs[case.name]
        if s.shape != r.shape:
            m = _match(ex, outs, cases, stress=False)
            detail = f"expected {r.shape}, received {s.shape}" if m else ""
            m = m or shape_mistake(r.shape, s.shape, case.dims)
            return _result(ex, "wrong", None, diagnosis(label, m, detail), m.key)
    err = max(_error(outs[c.name], refs[c.name], c) for c in cases)
    m = _match(ex, outs, cases, stress=False) or _unwritten(outs, refs, cases)
    if m is None:
        for case in cases:
            m = nonfinite_mistake(outs[case.name], refs[case.name], case.name)
            if m:
                break
    if m is None:
        m = scale_mistake([outs[c.name] for c in cases], [refs[c.name] for c in cases],
                          [c.dims for c in cases], lambda s, r: relative_error(s, r), APPROX_TOL)
    if m is None:
        return _result(ex, "wrong", err, f"({label}) no mistake of the catalogue matches; "
                       + _where_wrong(outs, refs, cases) + " " + reread(label), "unknown")
    return _result(ex, "wrong", err, diagnosis(label, m), m.key)


def _unwritten(outs: dict, refs: dict, cases: list[Case]) -> Mistake | None:
    """For a parameter buffer pre-filled with NaN: the gradients the student never wrote."""
    for case in cases:
        if case.segments:
            s, r = outs[case.name], refs[case.name]
            names = [n for n, sl in case.segments.items()
                     if np.isnan(s[sl]).any() and not np.isnan(r[sl]).any()]
            if names:
                return Mistake("not-written", "gradients never written", f"grads of "
                               f"{', '.join(names)} still hold the NaN the checker put there: "
                               "write every parameter's gradient, grads[name][...] = ...")
    return None


def _where_wrong(outs: dict, refs: dict, cases: list[Case]) -> str:
    case = max(cases, key=lambda c: _error(outs[c.name], refs[c.name], c))
    s, r = outs[case.name], refs[case.name]
    if case.segments:
        bad = [n for n, sl in case.segments.items() if relative_error(s[sl], r[sl]) > APPROX_TOL]
        unwritten = [n for n, sl in case.segments.items() if np.isnan(s[sl]).any()]
        if unwritten:
            return f"never written: {', '.join(unwritten)} (still NaN) with {case.name}."
        good = [n for n in case.segments if n not in bad]
        return (f"wrong gradients with {case.name}: {', '.join(bad)}; right: "
                f"{', '.join(good) or 'none'}.")
    i = np.unravel_index(int(np.argmax(np.abs(s - r))), s.shape) if s.size else ()
    where = tuple(int(k) for k in i)
    return (f"the largest difference is at index {where} with {case.name}: yours "
            f"{s[where]:.6g}, expected {r[where]:.6g}.")


def _result(ex, status, err, text="", key=None) -> CheckResult:
    return CheckResult(ex.label, ex.name, status, err, text, key)


def _cache_mistake(ex: Exercise, caches: dict, cases: list[Case]) -> Mistake | None:
    """The catalogue's cache mistake (``Mistake.cache``) whose variant is the student's cache."""
    for mistake in ex.mistakes:
        if not mistake.cache:
            continue
        try:
            with np.errstate(all="ignore"):
                if all(_error(np.asarray(caches[c.name], dtype=np.float64),
                              np.asarray(mistake.variant(c.args()), dtype=np.float64), c)
                       <= APPROX_TOL for c in cases):
                    return mistake
        except (TypeError, ValueError):  # a cache of another structure: not this mistake
            continue
    return None


def _bad_cache(ex: Exercise, err: float, caches: dict, cases: list[Case], case: Case,
               mine, ref) -> CheckResult:
    """The output is right, the cache is not: a catalogued cache mistake, or what is wrong."""
    label = ex.labels[0]
    m = _cache_mistake(ex, caches, cases)
    if m is not None:
        return _result(ex, "wrong", err, diagnosis(label, m), m.key)
    if case.stress:
        text = (f"({label}) the output is right, but with {case.name} the backward gets wrong "
                f"gradients from your cache, {describe(mine)}: compute it in the stable form, "
                "like the output. ")
    else:
        text = (f"({label}) the output is right but the backward cannot use the cache: it is "
                f"{describe(mine)}, and the backward reads the reference's, {describe(ref)} "
                "(see the lines of the backward that unpack it). ")
    return _result(ex, "wrong", err, text + reread(label), "cache")


def grade(ex: Exercise, fn) -> CheckResult:
    """Check ``fn`` (with the reference's signature) against the reference on every case."""
    cases, reference = ex.cases(), ex.reference()
    outs, refs, caches = {}, {}, {}
    bad_cache: dict[bool, tuple] = {}  # stress? -> (case, student's cache, reference's)
    try:
        for case in cases:
            raw = _call(ex, fn, case)
            with np.errstate(all="ignore"):
                ref_raw = ex.run(reference, case.args())
            refs[case.name] = _pick(ex, ref_raw, ex.output)
            outs[case.name] = _pick(ex, raw, ex.output)
            if ex.backward is not None:
                caches[case.name] = raw[1]
                if (case.stress not in bad_cache
                        and not _cache_works(ex, raw[1], ref_raw[1], case)):
                    bad_cache[case.stress] = (case, raw[1], ref_raw[1])
    except _Failure as f:
        return _result(ex, f.status, None, f.text, f.mistake)
    ordinary = [c for c in cases if not c.stress]
    errors = {c.name: _error(outs[c.name], refs[c.name], c) for c in cases}
    err = max(errors[c.name] for c in ordinary)
    if err > APPROX_TOL:
        return _explain_wrong(ex, outs, refs, ordinary)
    if False in bad_cache:  # the value is right: now the cache matters
        return _bad_cache(ex, err, caches, ordinary, *bad_cache[False])
    status = "exact" if err <= EXACT_TOL else "approximate"
    failing = [c for c in cases if c.stress and errors[c.name] > APPROX_TOL]
    if not failing and True in bad_cache:  # right values everywhere, a cache that breaks
        return _bad_cache(ex, err, caches, [bad_cache[True][0]], *bad_cache[True])
    if not failing:
        return _result(ex, status, err)
    m = _match(ex, outs, cases, stress=True)
    if m is None:
        m = nonfinite_mistake(outs[failing[0].name], refs[failing[0].name], failing[0].name)
        m = m or Mistake("unstable", "unstable on extreme inputs", f"right on ordinary inputs, "
                         f"but off by {errors[failing[0].name]:.1e} with {failing[0].name}")
    return _result(ex, m.status if m.variant else "wrong", err, diagnosis(ex.labels[0], m),
                   m.key)
