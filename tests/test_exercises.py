"""The exercises: markers and generator, the checker's verdicts, and its catalogue of mistakes.

The mutation tests write each classic mistake as real code (a broken copy of a reference
function, or a source edit of ``network.backward``), never through the catalogue's own
variants, and assert that the checker marks it wrong *and* names the right mistake.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from numpyvae import network, ops, optim
from numpyvae.exercises import (
    EXERCISES,
    assemble,
    check,
    check_workspace,
    cli,
    generate,
    labels,
    markers,
    report,
    workspace,
)
from numpyvae.exercises.catalogue import SECTIONS

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- generator
def test_generated_copies_are_up_to_date():
    assert generate.differences(generate.generated()) == [], (
        "regenerate with: python -m numpyvae.exercises.generate")


def test_markers_strip_a_region_to_a_labelled_stub():
    src = ("def f(x):\n    y = x\n    ### BEGIN SOLUTION\n    ### HINT: double it\n"
           "    z = 2 * y  # (KL-2)\n    ### END SOLUTION\n    return z\n")
    out = markers.strip_python(src)
    assert out == ('def f(x):\n    y = x\n    raise NotImplementedError("(KL-2): double it")\n'
                   "    return z\n")
    md = "Q?\n<!-- BEGIN SOLUTION -->\nthe answer\n<!-- END SOLUTION -->\nnext"
    assert markers.strip_markdown(md) == "Q?\n*Your answer here.*\nnext"


@pytest.mark.parametrize("src, says", [
    ("### BEGIN SOLUTION\nx\n", "never closed"),
    ("x\n### END SOLUTION\n", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n", "inside the region"),
    ("### HINT: loose\n", "outside a solution region"),
])
def test_unbalanced_markers_name_the_line(src, says):
    with pytest.raises(markers.MarkerError, match=says):
        markers.strip_python(src, "f.py")


def test_stubs_have_no_solutions_and_keep_the_signatures():
    for dst in generate.MODULES.values():
        text = (generate.TEMPLATES / dst).read_text()
        assert "### BEGIN SOLUTION" not in text and "from ." not in text
        assert "raise NotImplementedError(" in text
    stubs = (generate.TEMPLATES / "vae_ops.py").read_text()
    for name in ("dense_backward", "kl_standard_normal_backward", "softplus"):
        first_line = inspect.getsource(getattr(ops, name)).split("\n")[0]
        assert first_line in stubs, first_line  # same name, signature, and docstring after


def test_exercise_notebooks_have_no_solutions_and_no_outputs():
    for path in sorted((generate.TEMPLATES / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            assert "BEGIN SOLUTION" not in text, path.name
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None


# ----------------------------------------------------------------------------- traceability
@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda path: path.stem)
def test_every_question_is_there_and_each_answer_follows_one(path):
    """Under "Think before you look", the questions run 1, 2, 3, ... with none missing, and an
    answer (a markdown cell in BEGIN/END SOLUTION, which the exercise copy strips) never follows
    another answer. (Notebook 9's re-measured answers to its questions 1 and 2 were once written
    over questions 2 and 3 instead of over the old answers: the source then held two answers to
    each, and the students' copy no questions 2 and 3 at all.)"""
    cells = json.loads(path.read_text())["cells"]
    start = next(i for i, c in enumerate(cells)
                 if "## Think before you look" in "".join(c["source"]))
    numbers, previous_is_answer = [], False
    for i, cell in enumerate(cells[start:], start):
        text = "".join(cell["source"])
        is_answer = cell["cell_type"] == "markdown" and text.lstrip().startswith(
            "<!-- BEGIN SOLUTION")
        assert not (is_answer and previous_is_answer), f"cell {i}: an answer after an answer"
        if cell["cell_type"] == "markdown" and not is_answer:
            numbers += [int(n) for n in re.findall(r"(?m)^(\d+)\. \*\*", text)]
        previous_is_answer = is_answer
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, numbers


def test_every_exercised_label_maps_to_a_function_that_cites_it():
    defined = set(re.findall(r"\\tag\{([A-Z]+-\d+)\}",
                             "".join(p.read_text() for p in (ROOT / "derivations").glob("*.md"))))
    for ex in EXERCISES:
        ref = ex.reference()
        source = inspect.getsource(ref.step if inspect.isclass(ref) else ref)
        for label in ex.labels:
            assert label in defined, label
            assert f"({label})" in source, f"{ex.function} does not cite ({label})"
    assert len(labels()) == 36


def test_every_section_to_reread_exists_and_derives_its_label():
    for label, (file, heading) in SECTIONS.items():
        text = (ROOT / "derivations" / file).read_text()
        parts = re.split(r"^#+ (.*)$", text, flags=re.MULTILINE)
        bodies = dict(zip(parts[1::2], parts[2::2], strict=True))
        assert heading in bodies, f"{file} has no heading {heading!r}"
        assert f"\\tag{{{label}}}" in bodies[heading] or f"({label})" in heading, (label, heading)


# ----------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: f"{ex.label}-{ex.function}")
def test_reference_functions_are_exact(ex):
    result = check(ex.labels[0], ex.reference(), function=ex.function)
    assert result.status == "exact" and result.passed, str(result)


def _write_solution(folder: Path, only: str | None = None) -> None:
    """Every student file solved (only=None), or the solution of one file."""
    for src, dst in generate.MODULES.items():
        if only in (None, dst):
            (folder / dst).write_text(generate.solution_module(generate.PACKAGE / src))


@pytest.fixture()
def course(tmp_path):
    written, existing = workspace.start(tmp_path / "course")
    assert written and not existing
    return tmp_path / "course"


def test_fresh_workspace_is_not_started_everywhere(course):
    results, _, errors = check_workspace(course)
    assert not errors and len(results) == len(EXERCISES)
    assert {r.status for r in results} == {"not started"}
    assert all("Traceback" not in r.diagnosis for r in results)
    assert report.summary(results) == "0 of 36 equations exact (36 not started)"


def test_filling_one_stub_turns_its_row_exact(course):
    path = course / "vae_ops.py"
    text = path.read_text()
    stub = next(ln for ln in text.split("\n") if "(DENSE-1)" in ln and "raise" in ln)
    path.write_text(text.replace(stub, "    y = x @ W + b"))
    results, _, _ = check_workspace(course)
    status = {(r.label, r.function): r.status for r in results}
    assert status[("DENSE-1", "dense_forward")] == "exact"
    assert sum(s == "not started" for s in status.values()) == len(EXERCISES) - 1


def test_start_refuses_to_overwrite_without_force(course, capsys):
    (course / "vae_ops.py").write_text("# my work\n")
    written, existing = workspace.start(course)
    assert not written and "vae_ops.py" in existing
    assert (course / "vae_ops.py").read_text() == "# my work\n"
    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["start", str(course)])) == 1
    err = capsys.readouterr().err
    assert "vae_ops.py" in err and "--force" in err
    assert cli.main(parser.parse_args(["start", str(course), "--force"])) == 0
    assert "raise NotImplementedError" in (course / "vae_ops.py").read_text()


def test_syntax_error_names_file_and_line_and_spares_other_files(course):
    path = course / "vae_ops.py"
    lines = path.read_text().split("\n")
    lines[40] = "    dW = x.T @@ dy"
    path.write_text("\n".join(lines))
    results, _, errors = check_workspace(course)
    assert "vae_ops.py, line 41: SyntaxError" in errors["vae_ops"]
    for r in results:
        ex = next(e for e in EXERCISES if e.label == r.label and e.name == r.function)
        assert r.status == ("error" if ex.module == "vae_ops" else "not started")


def test_wrong_shape_nan_and_exception_are_rows_not_crashes():
    def kl_forward_unsummed(mu, logvar):
        return 0.5 * (mu * mu + np.expm1(logvar) - logvar), (mu, logvar)

    r = check("KL-1", kl_forward_unsummed)
    assert r.status == "wrong" and r.mistake == "sum-missing"
    assert "expected shape (4,), one number per example, received (4, 3)" in r.diagnosis

    def kl_backward_nan(dkl, cache):
        mu, logvar = cache
        dmu = dkl[:, None] * mu
        dmu[1, 2] = np.nan
        return dmu, dkl[:, None] * 0.5 * np.expm1(logvar)

    r = check("KL-2", kl_backward_nan)
    assert r.status == "wrong" and r.mistake == "nan" and "(1, 2)" in r.diagnosis

    def kl_backward_crash(dkl, cache):
        mu, logvar = cache
        return {}["dmu"], mu

    r = check("KL-2", kl_backward_crash)
    assert r.status == "error" and "KeyError" in r.diagnosis
    assert "kl_backward_crash" in r.diagnosis and "compare.py" not in r.diagnosis

    r = check("DENSE-2", lambda dy, cache: cache[1])
    assert r.status == "wrong" and r.mistake == "structure" and "(dx, dW, db)" in r.diagnosis


# ----------------------------------------------------------------------------- mutations
def _sig(a):
    return ops.sigmoid(a)


def _dense(dx=None, dW=None, db=None):
    def dense_backward(dy, cache, need_dx=True):
        x, W = cache
        return (dx(dy, x, W) if dx else dy @ W.T, dW(dy, x, W) if dW else x.T @ dy,
                db(dy, x, W) if db else dy.sum(axis=0))
    return dense_backward


def _kl_back(dmu=None, dlogvar=None):
    def kl_standard_normal_backward(dkl, cache):
        mu, logvar = cache
        g = dkl[:, None]
        return (dmu(g, mu, logvar) if dmu else g * mu,
                dlogvar(g, mu, logvar) if dlogvar else g * 0.5 * np.expm1(logvar))
    return kl_standard_normal_backward


def _rep_back(dlogvar):
    def reparameterize_backward(dz, cache):
        std, eps = cache
        return dz, dlogvar(dz, std, eps)
    return reparameterize_backward


def _gau_back(dmean=None, dlogvar=None):
    def gaussian_nll_backward(dloss, cache):
        diff, inv_var = cache
        g = dloss[:, None]
        return (dmean(g, diff, inv_var) if dmean else -g * diff * inv_var,
                dlogvar(g, diff, inv_var) if dlogvar else g * 0.5 * (1 - diff * diff * inv_var))
    return gaussian_nll_backward


def _gau_fwd(f):
    def gaussian_nll_forward(x, mean, logvar):
        inv_var, diff = np.exp(-logvar), x - mean
        return f(diff, logvar).sum(axis=1), (diff, inv_var)
    return gaussian_nll_forward


def _bce(f):
    def bce_with_logits_forward(logits, x):
        return f(logits, x).sum(axis=1), (logits, x)
    return bce_with_logits_forward


def _kl_fwd(f):
    def kl_standard_normal_forward(mu, logvar):
        return (0.5 * f(mu, logvar)).sum(axis=1), (mu, logvar)
    return kl_standard_normal_forward


def _init(make):
    def init(fan_in, fan_out, rng, dtype=np.float32):
        return make(fan_in, fan_out, rng).astype(dtype)
    return init


def _softplus_bwd(f):
    def softplus_backward(dh, cache):
        return f(dh, cache)
    return softplus_backward


def _adam(**edits):
    """An Adam whose step is written out, with one rule broken."""
    class Broken(optim.Adam):
        def step(self, theta, grad):
            self.t += 1
            b1, b2, t = self.beta1, self.beta2, self.t
            self.m = edits.get("m", lambda m, g: b1 * m + (1 - b1) * g)(self.m, grad)
            self.v = edits.get("v", lambda v, g: b2 * v + (1 - b2) * g * g)(self.v, grad)
            m_hat = self.m / (1 - b1**t) if edits.get("correct_m", True) else self.m
            v_hat = self.v / (1 - b2**t) if edits.get("correct_v", True) else self.v
            denom = (np.sqrt(v_hat + self.eps) if edits.get("eps_inside")
                     else (np.sqrt(v_hat) if edits.get("root", True) else v_hat) + self.eps)
            if edits.get("rebind"):
                theta = theta - self.lr * m_hat / denom  # noqa: F841 - the mistake itself
            else:
                theta -= self.lr * m_hat / denom
    return Broken


def _floor(f, cache=lambda a, c: a - c):
    def logvar_floor_forward(a, log_floor):
        return f(a, log_floor), cache(a, log_floor)
    return logvar_floor_forward


def _ratio(log_p, log_q):
    """log p(z) - log q(z|x) from two per-unit log-densities, summed over J, as a student would."""
    def log_prior_ratio_forward(z, eps, logvar):
        return np.sum(log_p(z), axis=-1) - np.sum(log_q(eps, logvar), axis=-1), z
    return log_prior_ratio_forward


def _ratio_back(dz=None, dlogvar=None):
    def log_prior_ratio_backward(dr, cache):
        z = cache
        return (dz(dr, z) if dz else -dr[..., None] * z,
                dlogvar(dr, z) if dlogvar else 0.5 * np.broadcast_to(dr.sum(axis=0)[:, None],
                                                                     z.shape[1:]))
    return log_prior_ratio_backward


def _lme(L=None, cache=None):
    """log_mean_exp_forward, the stable way, with its value or its cache replaced."""
    def log_mean_exp_forward(log_w):
        k = log_w.shape[0]
        m = log_w.max(axis=0)
        e = np.exp(log_w - m)
        s = e.sum(axis=0)
        value = L(log_w, m, e, s, k) if L else m + np.log(s) - math.log(k)
        return value, (cache(log_w, m, e, s) if cache else e / s)
    return log_mean_exp_forward


def _naive_lme(log_w):
    w = np.exp(log_w)
    return np.log(np.mean(w, axis=0)), w / w.sum(axis=0)


def _softmax(w):
    e = np.exp(w - w.max(axis=0))
    return e / e.sum(axis=0)


B1 = 0.9
MUTATIONS = [
    ("DENSE-1", lambda x, W, b: (x @ W, (x, W)), "bias-forgotten"),
    ("DENSE-2", _dense(dW=lambda dy, x, W: x.T @ dy / len(x)), "mean-over-B"),
    ("DENSE-2", _dense(dW=lambda dy, x, W: dy.T @ x), "transposed"),
    ("DENSE-2", _dense(dW=lambda dy, x, W: x @ dy), "transposed"),
    ("DENSE-2", _dense(dW=lambda dy, x, W: -(x.T @ dy)), "sign"),
    ("DENSE-3", _dense(db=lambda dy, x, W: dy.mean(axis=0)), "mean-over-B"),
    ("DENSE-3", _dense(db=lambda dy, x, W: dy.sum(axis=1)), "wrong-axis"),
    ("DENSE-3", _dense(db=lambda dy, x, W: np.zeros(dy.shape[1])), "bias-missing"),
    ("DENSE-4", _dense(dx=lambda dy, x, W: dy @ W), "transposed"),
    ("ACT-1", lambda a: np.log(1 + np.exp(a)), "softplus-overflow"),
    ("ACT-1", lambda a: np.maximum(a, 0) + np.log(1 + np.exp(-np.abs(a))), "log-not-log1p"),
    ("ACT-2", _softplus_bwd(lambda dh, a: dh), "derivative-forgotten"),
    ("ACT-2", _softplus_bwd(lambda dh, a: dh * (1 - _sig(a))), "sigma-complement"),
    ("ACT-2", _softplus_bwd(lambda dh, a: -dh * _sig(a)), "sign"),
    ("ACT-2", _softplus_bwd(lambda dh, a: dh @ _sig(a).T), "matmul-not-elementwise"),
    ("ACT-3", lambda a: np.where(a >= 0, np.exp(-a) / (1 + np.exp(-a)), 1 / (1 + np.exp(a))),
     "sigma-complement"),
    ("ACT-4", lambda dp, p: dp, "derivative-forgotten"),
    ("ACT-4", lambda dp, p: dp * p * p, "sigma-complement"),
    ("ACT-4", lambda dp, p: dp * _sig(p) * (1 - _sig(p)), "cache-misread"),
    ("ACT-5", lambda dh, h: dh * (1 - h), "tanh-not-squared"),
    ("ACT-5", lambda dh, h: dh * (1 - np.tanh(h) ** 2), "cache-misread"),
    ("ACT-6", lambda dh, a: np.maximum(dh, 0), "relu-of-gradient"),
    ("ACT-6", lambda a: (np.maximum(a, 0), None), "cache"),
    ("ACT-6", lambda dh, a: dh, "derivative-forgotten"),
    ("INIT-1", _init(lambda i, o, rng: rng.uniform(-1, 1, (i, o)) * math.sqrt(2 / (i + o))),
     "std-as-range"),
    ("INIT-1", _init(lambda i, o, rng: rng.uniform(-1, 1, (i, o)) * math.sqrt(6 / i)),
     "other-init"),
    ("INIT-1", _init(lambda i, o, rng: rng.normal(0, math.sqrt(2 / (i + o)), (i, o))),
     "normal-not-uniform"),
    ("INIT-1", _init(lambda i, o, rng: rng.uniform(-1, 1, (o, i)) * math.sqrt(6 / (i + o))),
     "transposed"),
    ("INIT-2", _init(lambda i, o, rng: rng.uniform(-1, 1, (i, o)) * math.sqrt(6 / o)),
     "fan-out"),
    ("BER-2", lambda a, x: ((np.maximum(a, 0) - x * a + np.log1p(np.exp(-np.abs(a))))
                            .mean(axis=1), (a, x)), "mean-over-D"),
    ("BER-2", _bce(lambda a, x: -(x * np.log(_sig(a)) + (1 - x) * np.log(1 - _sig(a)))),
     "log-of-sigmoid"),
    ("BER-2", _bce(lambda a, x: -(x * np.log(_sig(a) + 1e-10)
                                  + (1 - x) * np.log(1 - _sig(a) + 1e-10))), "log-eps"),
    ("BER-2", _bce(lambda a, x: -x * a + np.log1p(np.exp(-np.abs(a)))), "max-forgotten"),
    ("BER-3", lambda d, c: _sig(c[0]) - c[1], "upstream-forgotten"),
    ("BER-3", lambda d, c: d[:, None] * (c[1] - _sig(c[0])), "sign"),
    ("BER-3", lambda d, c: d[None, :] * (_sig(c[0]) - c[1]), "shape-error"),
    ("GAU-1", _gau_fwd(lambda d, s: 0.5 * (s + d * d * np.exp(-s))), "log-2pi-forgotten"),
    ("GAU-1", _gau_fwd(lambda d, s: 0.5 * (ops.LOG_2PI + s + d * d * np.exp(-s / 2))),
     "std-as-variance"),
    ("GAU-1", _gau_fwd(lambda d, s: ops.LOG_2PI + s + d * d * np.exp(-s)), "half-missing"),
    ("GAU-2", _gau_back(dmean=lambda g, d, iv: g * d * iv), "sign"),
    ("GAU-2", _gau_back(dmean=lambda g, d, iv: -d * iv), "upstream-forgotten"),
    ("GAU-2", _gau_back(dmean=lambda g, d, iv: -g * d), "variance-forgotten"),
    ("GAU-3", _gau_back(dlogvar=lambda g, d, iv: g * (1 - d * d * iv)), "half-missing"),
    ("REP-1", lambda mu, lv, eps: (mu + np.exp(lv) * eps, (np.exp(0.5 * lv), eps)),
     "variance-as-std"),
    ("REP-3", _rep_back(lambda dz, std, eps: dz * 0.5 * std * std * eps), "variance-as-std"),
    ("REP-3", _rep_back(lambda dz, std, eps: dz * std * eps), "half-missing"),
    ("REP-3", _rep_back(lambda dz, std, eps: dz * 0.5 * std), "eps-forgotten"),
    ("KL-1", _kl_fwd(lambda m, s: m * m + np.exp(s) - s), "exp-not-expm1"),
    ("KL-1", _kl_fwd(lambda m, s: m * m + np.expm1(s) + s), "logvar-sign"),
    ("KL-1", _kl_fwd(lambda m, s: 2 * (m * m + np.expm1(s) - s)), "half-missing"),
    ("KL-1", _kl_fwd(lambda m, s: m * m + np.exp(s) - s - 1), "expm1-precision"),
    ("KL-2", _kl_back(dmu=lambda g, m, s: m), "upstream-forgotten"),
    ("KL-3", _kl_back(dlogvar=lambda g, m, s: g * 0.5 * np.exp(s)), "exp-not-expm1"),
    ("KL-3", _kl_back(dlogvar=lambda g, m, s: g * np.expm1(s)), "half-missing"),
    ("KL-3", _kl_back(dlogvar=lambda g, m, s: -g * 0.5 * np.expm1(s)), "sign"),
    ("ADAM-1", _adam(m=lambda m, g: B1 * m + g), "one-minus-beta-forgotten"),
    ("ADAM-2", _adam(v=lambda v, g: 0.999 * v + 0.001 * g), "grad-not-squared"),
    ("ADAM-3", _adam(correct_m=False, correct_v=False), "no-bias-correction"),
    ("ADAM-3", _adam(correct_v=False), "m-correction-only"),
    ("ADAM-4", _adam(eps_inside=True), "eps-inside-sqrt"),
    ("ADAM-4", _adam(rebind=True), "not-in-place"),
    ("ADAM-4", _adam(root=False), "no-sqrt"),
    ("ADAM-3", _adam(correct_m=False), "v-correction-only"),
    ("SGD-1", type("SGD", (optim.SGD,), {"step": lambda self, theta, g: theta.__isub__(g)}),
     "lr-forgotten"),
    ("REP-1", lambda mu, lv, eps: (mu + lv * eps, (np.exp(0.5 * lv), eps)), "logvar-as-std"),
    ("REP-2", lambda dz, c: (dz * c[0] * c[1], dz * 0.5 * c[0] * c[1]), "std-in-dmu"),
    ("GAU-1", _gau_fwd(lambda d, s: 0.5 * (ops.LOG_2PI + s + d * d * np.exp(s))),
     "times-variance"),
    ("GAU-3", _gau_back(dlogvar=lambda g, d, iv: g * 0.5 * (1 + d * d * iv)), "plus-minus"),
    ("BER-2", _bce(lambda a, x: np.maximum(a, 0) + x * a + np.log1p(np.exp(-np.abs(a)))),
     "xa-sign"),
    ("BER-3", lambda d, c: d[:, None] * (c[0] - c[1]), "logits-as-p"),
    ("KL-2", _kl_back(dmu=lambda g, m, s: 0.5 * g * m), "extra-half"),
    ("INIT-2", _init(lambda i, o, rng: rng.uniform(-1, 1, (i, o)) * math.sqrt(6 / (i + o))),
     "other-init"),
    ("GAU-4", _floor(lambda a, c: ops.softplus(a - c)), "floor-not-added"),
    ("GAU-4", _floor(lambda a, c: c + ops.softplus(a)), "shift-forgotten"),
    ("GAU-4", _floor(lambda a, c: np.maximum(a, c)), "hard-clamp"),
    ("GAU-4", _floor(lambda a, c: np.log(c + np.exp(a))), "floor-as-variance"),
    ("GAU-4", _floor(lambda a, c: np.log(np.exp(c) + np.exp(a))), "floor-overflow"),
    ("GAU-4", _floor(lambda a, c: c + ops.softplus(a - c), cache=lambda a, c: a), "a-cached"),
    ("GAU-5", lambda ds, t: ds, "floor-derivative-forgotten"),
    ("GAU-5", lambda ds, t: ds * ops.sigmoid(-t), "sigma-complement"),
    ("GAU-5", lambda ds, t: ds * ops.softplus(t), "softplus-as-slope"),
    ("GAU-6", lambda b, n: (b.copy(), None), "not-broadcast"),
    ("GAU-6", lambda ds: ds, "batch-sum-missing"),
    ("GAU-6", lambda ds: ds[0], "one-row-only"),
    ("GAU-6", lambda ds: ds.mean(axis=0), "mean-over-B"),
    ("IWAE-4", _ratio(lambda z: -0.5 * z * z,
                      lambda eps, lv: -0.5 * (ops.LOG_2PI + lv + eps * eps)),
     "log-2pi-one-side"),
    ("IWAE-4", _ratio(lambda z: -0.5 * (ops.LOG_2PI + z * z),
                      lambda eps, lv: -0.5 * (lv + eps * eps)),
     "log-2pi-one-side"),
    ("IWAE-4", _ratio(lambda z: 0.5 * z * z, lambda eps, lv: -0.5 * (lv + eps * eps)),
     "z2-sign"),
    ("IWAE-4", _ratio(lambda z: -0.5 * z * z, lambda eps, lv: -lv - 0.5 * eps * eps),
     "logvar-half-missing"),
    ("IWAE-4", _ratio(lambda z: -0.5 * z * z, lambda eps, lv: 0.5 * lv - 0.5 * eps * eps),
     "logvar-sign"),
    ("IWAE-4", lambda z, eps, lv: (0.5 * (lv.sum(-1) + np.sum(eps * eps - eps * eps, -1)), z),
     "eps2-for-z2"),
    ("IWAE-4", _ratio(lambda z: 0.5 * z * z, lambda eps, lv: 0.5 * (lv + eps * eps)), "sign"),
    ("IWAE-6", _ratio_back(dz=lambda dr, z: dr[..., None] * z), "dz-sign"),
    ("IWAE-6", _ratio_back(dz=lambda dr, z: -z), "upstream-forgotten"),
    ("IWAE-6", _ratio_back(dz=lambda dr, z: -0.5 * dr[..., None] * z), "half-kept"),
    ("IWAE-6", _ratio_back(dlogvar=lambda dr, z: 0.5 * dr[..., None] * np.ones_like(z)),
     "samples-not-summed"),
    ("IWAE-6", _ratio_back(dlogvar=lambda dr, z: 0.5 * dr[0][:, None] * np.ones(z.shape[1:])),
     "first-sample-only"),
    ("IWAE-6", _ratio_back(dlogvar=lambda dr, z: 0.5 * np.broadcast_to(
        dr.mean(axis=0)[:, None], z.shape[1:])), "mean-over-k"),
    ("IWAE-6", _ratio_back(dlogvar=lambda dr, z: np.broadcast_to(
        dr.sum(axis=0)[:, None], z.shape[1:])), "half-missing"),
    ("IWAE-2", _lme(L=lambda lw, m, e, s, k: m + np.log(s)), "log-k-forgotten"),
    ("IWAE-2", _lme(L=lambda lw, m, e, s, k: np.log(s) - math.log(k)), "max-not-added-back"),
    ("IWAE-2", _lme(L=lambda lw, m, e, s, k: lw.mean(axis=0)), "mean-of-logs"),
    ("IWAE-2", _naive_lme, "max-shift-forgotten"),
    ("IWAE-2", _lme(cache=lambda lw, m, e, s: e), "weights-unnormalised"),
    ("IWAE-2", _lme(cache=lambda lw, m, e, s: lw), "log-weights-cached"),
    ("IWAE-2", _lme(cache=lambda lw, m, e, s: np.exp(lw) / np.exp(lw).sum(axis=0)), "cache"),
    ("IWAE-5", lambda dL, w: dL, "dL-itself"),
    ("IWAE-5", lambda dL, w: np.ones_like(w) * dL / len(w), "uniform-weights"),
    ("IWAE-5", lambda dL, w: np.ones_like(w) * dL, "weights-forgotten"),
    ("IWAE-5", lambda dL, w: dL * w / w.mean(axis=0), "unnormalised-weights"),
    ("IWAE-5", lambda dL, w: dL * _softmax(w), "softmax-twice"),
]
APPROXIMATE = {"log-not-log1p", "expm1-precision"}


def _network_backward_edit(*edits):
    """network.backward with its source edited: each (old, new) replaced exactly once."""
    source = inspect.getsource(network.backward)
    for old, new in edits:
        assert source.count(old) >= 1, old
        source = source.replace(old, new)
    namespace = dict(vars(network))
    exec(compile(source, "<edited network.backward>", "exec"), namespace)  # noqa: S102
    return namespace["backward"]


BACKWARD_MUTATIONS = [
    ([("np.full(B, 1.0 / B", "np.full(B, 1.0"), ("np.full(B, beta / B", "np.full(B, beta")],
     "sum-over-B"),
    ([("np.full(B, 1.0 / B", "np.full(B, 1.0")], "recon-sum-over-B"),
    ([("np.full(B, beta / B", "np.full(B, beta")], "kl-sum-over-B"),
    ([("np.full(B, beta / B", "np.full(B, 1.0 / B")], "beta-ignored"),
    ([("dmu = dmu + dmu_kl", "dmu = dmu"), ("dlogvar = dlogvar + dlogvar_kl", "dlogvar = dlogvar")],
     "kl-path-missing"),
    ([("dmu, dlogvar = ops.reparameterize_backward(dz, cache.rep_cache)",
       "dmu, dlogvar = 0 * dz, 0 * dz")], "sample-path-missing"),
    ([("dh = dh + dh_head", "dh = dh_head")], "heads-not-added"),
    ([("dh_mu + dh_lv", "dh_mu")], "enc-heads-not-added"),
    ([("grads[mu_layer.b][...]", "_unused")], "not-written"),
]


@pytest.mark.parametrize("label, fn, key", MUTATIONS, ids=[f"{m[0]}-{m[2]}" for m in MUTATIONS])
def test_mutation_is_caught_and_diagnosed(label, fn, key):
    result = check(label, fn)
    expected = "approximate" if key in APPROXIMATE else "wrong"
    assert result.status == expected, str(result)
    assert result.mistake == key, str(result)
    assert f"({label.split(',')[0]})" in result.diagnosis or label.startswith("ADAM")
    assert "Reread derivations/" in result.diagnosis, str(result)


@pytest.mark.parametrize("edits, key", BACKWARD_MUTATIONS, ids=[m[1] for m in BACKWARD_MUTATIONS])
def test_backward_mutation_is_caught_and_diagnosed(edits, key):
    result = check("ELBO-3", _network_backward_edit(*edits))
    assert result.status == "wrong" and result.mistake == key, str(result)
    assert "(ELBO-3)" in result.diagnosis


# ----------------------------------------------------------------------------- your VAE trains
def test_solved_workspace_is_exact_and_trains_like_the_reference(tmp_path):
    workspace.start(tmp_path)
    _write_solution(tmp_path)
    results, modules, errors = check_workspace(tmp_path)
    assert not errors and all(r.status == "exact" for r in results), report.table(results)
    assert assemble.missing(results) == []
    run = assemble.train_yours(modules, n_images=200, epochs=1, hidden=(16,), n_latent=3)
    assert not run.failure and len(run.epochs) == 1
    yours, reference = run.epochs[0]
    assert yours == reference and np.isfinite(yours)
    assert "identical to the reference" in run.table()


def test_cli_check_only_one_label(course, capsys):
    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["check", str(course), "--only", "KL-3"])) == 1
    out = capsys.readouterr().out
    assert "KL-3" in out and "not started" in out and "DENSE-1" not in out
