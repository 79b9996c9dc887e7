"""Grade a student's workspace, or one function from a notebook cell.

The student's files are executed from their source (no bytecode cache, so an edit is always
seen), each in its own module: a syntax error in ``vae_ops.py`` marks that file's rows and no
other. Each function is graded *alone*: while one op is checked, every other op of the
student's module is the reference's, so a mistake in ``sigmoid`` does not also fail
``softplus_backward`` (backprop-ninja's atomic steps).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from pathlib import Path

from .. import ops, optim
from . import report, rows_iwae, rows_layers, rows_losses, rows_training
from .compare import CheckResult, Exercise, grade, trimmed_traceback

EXERCISES: list[Exercise] = [*rows_layers.EXERCISES, *rows_losses.EXERCISES,
                             *rows_iwae.EXERCISES, *rows_training.EXERCISES]
STUDENT_FILES = {"vae_ops": "vae_ops.py", "vae_optim": "vae_optim.py",
                 "vae_network": "vae_network.py"}
REFERENCE_OPS = [n for n, f in vars(ops).items()
                 if inspect.isfunction(f) and f.__module__ == ops.__name__ and n[0] != "_"]


def labels() -> list[str]:
    """Every label that has an exercise, in the checker's order."""
    return list(dict.fromkeys(lab for ex in EXERCISES for lab in ex.labels))


def load_module(path: Path, name: str) -> tuple[types.ModuleType | None, str | None]:
    """(module, None), or (None, why it does not import: file, line, message)."""
    if not path.exists():
        return None, f"{path} does not exist (numpyvae exercises start {path.parent} writes it)"
    module = types.ModuleType(f"numpyvae_student_{name}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    try:
        code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except SyntaxError as err:
        text = f": {err.text.strip()}" if err.text else ""
        return None, f"{path.name}, line {err.lineno}: SyntaxError: {err.msg}{text}"
    try:
        exec(code, module.__dict__)  # noqa: S102 - the student's own file, by design
    except Exception as err:  # an error at import time: every row of this file says so
        return None, f"{path.name} does not import: {trimmed_traceback(err)}"
    return module, None


@contextlib.contextmanager
def _alone(module: types.ModuleType, keep: str):
    """Within the block, every op of ``module`` but ``keep`` is the reference's."""
    saved = {n: module.__dict__[n] for n in REFERENCE_OPS if n in module.__dict__ and n != keep}
    module.__dict__.update({n: getattr(ops, n) for n in saved})
    try:
        yield
    finally:
        module.__dict__.update(saved)


def load_workspace(folder: Path) -> tuple[dict, dict]:
    """(module name -> module, module name -> import error) for the student's files."""
    modules, errors = {}, {}
    for name, filename in STUDENT_FILES.items():
        module, error = load_module(Path(folder) / filename, name)
        if module is None:
            errors[name] = error
        else:
            modules[name] = module
    return modules, errors


def check_workspace(folder: Path | str = ".", only: str | None = None):
    """(results, modules, import errors) for every exercise (or those of label ``only``)."""
    modules, errors = load_workspace(Path(folder))
    results = []
    for ex in EXERCISES:
        if only is not None and only not in ex.labels:
            continue
        if ex.module in errors:
            results.append(CheckResult(ex.label, ex.name, "error",
                                       diagnosis=f"not checked: {errors[ex.module]}",
                                       mistake="import"))
            continue
        module, attr = modules[ex.module], ex.function.split(".")[0]
        if not hasattr(module, attr):
            results.append(CheckResult(ex.label, ex.name, "error", diagnosis=(
                f"{STUDENT_FILES[ex.module]} has no {attr}; restore it from the template "
                "(numpyvae exercises start DIR --force writes fresh copies)"), mistake="missing"))
            continue
        with _alone(module, attr):
            results.append(grade(ex, getattr(module, attr)))
    return results, modules, errors


def _as_class(fn, base):
    """A class for the optimiser exercises: ``fn`` itself, or a step function made a method."""
    return fn if inspect.isclass(fn) else type(base.__name__, (base,), {"step": fn})


def find(label: str, fn=None, function: str | None = None) -> Exercise:
    """The exercise of ``label``; with two (ACT-6), the one whose function ``fn``'s name names."""
    found = [ex for ex in EXERCISES if label in ex.labels]
    if not found:
        raise KeyError(f"no exercise for {label!r}; labels with exercises: {', '.join(labels())}")
    name = function or getattr(fn, "__name__", "").replace("<lambda>", "")
    if len(found) == 1:
        return found[0]
    for ex in found:
        if ex.function in name:
            return ex
    for ex in found:
        if name and ("backward" in name) == ex.function.endswith("backward"):
            return ex
    try:  # a lambda: tell relu_forward(a) from relu_backward(dh, cache) by its arity
        arity = len(inspect.signature(fn).parameters)
        return next(ex for ex in found
                    if len(inspect.signature(ex.reference()).parameters) == arity)
    except (TypeError, ValueError, StopIteration):
        return found[0]


def check(label: str, fn, function: str | None = None) -> CheckResult:
    """Grade ``fn`` for equation ``label``: ``fn`` has the signature of the reference function
    whose line cites the label (``numpyvae.ops.kl_standard_normal_backward`` for "KL-3",
    ``numpyvae.network.backward`` for "ELBO-3"; for ADAM-* an ``Adam`` class or a function
    ``step(self, theta, grad)``). Never raises for mistakes in ``fn``.

    >>> from numpyvae import ops
    >>> check("KL-3", ops.kl_standard_normal_backward).status
    'exact'
    """
    ex = find(label, fn, function)
    if ex.function == "Adam.step":
        fn = _as_class(fn, optim.Adam)
    elif ex.function == "SGD.step":
        fn = _as_class(fn, optim.SGD)
    rows = [e for e in EXERCISES if label in e.labels and e.function == ex.function]
    results = [grade(e, fn) for e in rows]  # IWAE-6 has a row for dz and one for dlogvar
    return min(results, key=lambda r: report.ORDER.index(r.status))  # the worst, first if tied
