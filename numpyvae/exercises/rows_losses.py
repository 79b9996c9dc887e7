"""Exercises of the loss terms and the sample: bernoulli.md, gaussian.md, reparameterization.md,
kl.md. Stress cases hold the extreme inputs where the unstable forms break (logits of +-800,
a posterior at the prior, where the KL is ~1e-14, a variance head far above its floor)."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .catalogue import NUMERICS, Mistake
from .compare import Case, Exercise


def _cases(seed: int, shapes, make, dim: str, stress=()) -> list[Case]:
    """Seeded cases of shape (B, n) each, n named ``dim`` (D pixels or J latent units)."""
    cases = []
    for k, (B, n) in enumerate(shapes):
        rng = np.random.default_rng(seed + k)
        cases.append(Case(f"B={B}, {dim}={n}", make(rng, B, n, k), {"B": B, dim: n}))
    for name, arrays in stress:
        B, n = next(iter(arrays.values())).shape
        cases.append(Case(name, arrays, {"B": B, dim: n}, stress=True))
    return cases


def _ber(rng, B, D, k):
    x = (rng.random((B, D)) < 0.5).astype(float) if k == 0 else rng.random((B, D))
    return dict(logits=rng.normal(0.0, 3.0, (B, D)), x=x, dloss=rng.normal(size=B))


def ber_cases() -> list[Case]:
    rng = np.random.default_rng(49)
    big = rng.uniform(30, 800, (3, 4)) * rng.choice((-1.0, 1.0), (3, 4))
    stress = [("logits of +-30 to +-800", dict(logits=big, x=(rng.random((3, 4)) < 0.5) * 1.0,
                                               dloss=rng.normal(size=3)))]
    return _cases(40, ((4, 7), (3, 5)), _ber, "D", stress)


def _gau(rng, B, D, k):
    return dict(x=rng.normal(size=(B, D)), mean=rng.normal(size=(B, D)),
                logvar=rng.normal(0.0, 0.7, (B, D)), dloss=rng.normal(size=B))


def gau_cases() -> list[Case]:
    return _cases(50, ((4, 7), (3, 5)), _gau, "D")


LOG_FLOOR_8BIT = math.log(1.0 / (12 * 256**2))  # the default floor of 8-bit pixels


def floor_cases(stress: bool = True) -> list[Case]:
    """Head outputs a around the floor c = log sigma^2_min, where the floor matters."""
    cases = []
    for k, (B, D, c) in enumerate(((4, 7, LOG_FLOOR_8BIT), (3, 5, math.log(0.05)))):
        rng = np.random.default_rng(90 + k)
        cases.append(Case(f"B={B}, D={D}, c={c:.4g}", dict(a=c + rng.normal(0.0, 3.0, (B, D)),
                          log_floor=c, ds=rng.normal(size=(B, D))), {"B": B, "D": D}))
    if stress:
        rng = np.random.default_rng(92)
        cases.append(Case("a of 720 to 800 (exp(a) overflows)", dict(
            a=rng.uniform(720, 800, (3, 4)), log_floor=LOG_FLOOR_8BIT,
            ds=rng.normal(size=(3, 4))), {"B": 3, "D": 4}, stress=True))
    return cases


def shared_cases() -> list[Case]:
    cases = []
    for k, (n, D) in enumerate(((4, 7), (3, 5))):
        rng = np.random.default_rng(95 + k)
        cases.append(Case(f"n={n}, D={D}", dict(b=rng.normal(size=D), n=n,
                                                ds=rng.normal(size=(n, D))), {"B": n, "D": D}))
    return cases


def _floor_back(a):
    return a["a"] - a["log_floor"]


def _latent(rng, B, J, k):
    return dict(mu=rng.normal(size=(B, J)), logvar=rng.normal(size=(B, J)),
                eps=rng.normal(size=(B, J)), dz=rng.normal(size=(B, J)), dkl=rng.normal(size=B))


def latent_cases(stress: bool = False) -> list[Case]:
    rng = np.random.default_rng(69)
    near = dict(mu=rng.normal(0, 1e-7, (3, 4)), logvar=rng.normal(0, 1e-7, (3, 4)),
                eps=rng.normal(size=(3, 4)), dz=rng.normal(size=(3, 4)), dkl=rng.normal(size=3))
    return _cases(60, ((4, 3), (3, 5)), _latent, "J",
                  [("mu and logvar ~1e-7 (at the prior)", near)] if stress else ())


def _sig(a):
    return ops.sigmoid(a)


def _upstream(name: str, f) -> Mistake:
    return Mistake("upstream-forgotten", f"the upstream gradient {name} forgotten",
                   f"each example's row is scaled by its {name} (B,): {name}[:, None] * ...", f)


def _bce_naive(a, eps=0.0):
    p = _sig(a["logits"])
    return -(a["x"] * np.log(p + eps) + (1 - a["x"]) * np.log(1 - p + eps)).sum(axis=1)


def _gau_loss(a, inv_var, log2pi=True):
    d = a["x"] - a["mean"]
    return (0.5 * (ops.LOG_2PI * log2pi + a["logvar"] + d * d * inv_var)).sum(axis=1)


def _kl(a, f):
    return (0.5 * f(a["mu"], a["logvar"])).sum(axis=1)


def _rep(out, mistakes):
    return Exercise(("REP-" + {"dmu": "2", "dlogvar": "3"}[out],), "vae_ops",
                    "reparameterize_backward", out, latent_cases,
                    lambda fn, a: fn(a["dz"], (np.exp(0.5 * a["logvar"]), a["eps"])),
                    lambda: ops.reparameterize_backward, returns=("dmu", "dlogvar"),
                    mistakes=tuple(mistakes))


def _kl_back(out, mistakes):
    return Exercise(("KL-" + {"dmu": "2", "dlogvar": "3"}[out],), "vae_ops",
                    "kl_standard_normal_backward", out, latent_cases,
                    lambda fn, a: fn(a["dkl"], (a["mu"], a["logvar"])),
                    lambda: ops.kl_standard_normal_backward, returns=("dmu", "dlogvar"),
                    mistakes=tuple(mistakes))


def _gau_grad(out, mistakes):
    return Exercise(("GAU-" + {"dmean": "2", "dlogvar": "3"}[out],), "vae_ops",
                    "gaussian_nll_backward", out, gau_cases,
                    lambda fn, a: fn(a["dloss"], (a["x"] - a["mean"], np.exp(-a["logvar"]))),
                    lambda: ops.gaussian_nll_backward, returns=("dmean", "dlogvar"),
                    mistakes=tuple(mistakes))


VARIANCE_AS_STD = ("variance-as-std", "the variance used as the standard deviation",
                   "sigma = exp(logvar / 2); exp(logvar) is sigma^2")

EXERCISES = [
    Exercise(("BER-2",), "vae_ops", "bce_with_logits_forward", "loss", ber_cases,
             lambda fn, a: fn(a["logits"], a["x"]), lambda: ops.bce_with_logits_forward,
             returns=("loss", "cache"),
             backward=lambda c, a: ops.bce_with_logits_backward(a["dloss"], c), mistakes=(
                 Mistake("max-forgotten", "max(a, 0) forgotten",
                         "log(1 + e^a) = max(a, 0) + log1p(e^-|a|); without the max it is the "
                         "softplus of -|a|", lambda a: (-a["x"] * a["logits"] + np.log1p(
                             np.exp(-np.abs(a["logits"])))).sum(axis=1)),
                 Mistake("xa-sign", "+x a where -x a belongs", "the likelihood term is x log "
                         "sigma(a), which contributes -x a to the loss",
                         lambda a: (np.maximum(a["logits"], 0) + a["x"] * a["logits"] + np.log1p(
                             np.exp(-np.abs(a["logits"])))).sum(axis=1)),
                 Mistake("log-of-sigmoid", "the log of the sigmoid, computed from p",
                         "sigma(a) rounds to 0 or 1 for |a| > 37, and log(0) is -inf; the "
                         "logits form never takes the log of a probability", _bce_naive,
                         stress=True, section=NUMERICS["BER-2"]),
                 Mistake("log-eps", "log(p + 1e-10)", "the epsilon caps each pixel's loss at "
                         "23 nats and biases every other one; use the logits form",
                         lambda a: _bce_naive(a, 1e-10), stress=True,
                         section=NUMERICS["BER-2"]))),
    Exercise(("BER-3",), "vae_ops", "bce_with_logits_backward", "dlogits", ber_cases,
             lambda fn, a: fn(a["dloss"], (a["logits"], a["x"])),
             lambda: ops.bce_with_logits_backward, mistakes=(
                 _upstream("dloss", lambda a: _sig(a["logits"]) - a["x"]),
                 Mistake("logits-as-p", "the logits used as the probability",
                         "the gradient is sigma(a) - x: the probability minus the target",
                         lambda a: a["dloss"][:, None] * (a["logits"] - a["x"])))),
    Exercise(("GAU-1",), "vae_ops", "gaussian_nll_forward", "loss", gau_cases,
             lambda fn, a: fn(a["x"], a["mean"], a["logvar"]), lambda: ops.gaussian_nll_forward,
             returns=("loss", "cache"),
             backward=lambda c, a: ops.gaussian_nll_backward(a["dloss"], c), mistakes=(
                 Mistake("log-2pi-forgotten", "log(2 pi) forgotten", "the normalising "
                         "constant is part of the likelihood: without it the NLL is not in nats",
                         lambda a: _gau_loss(a, np.exp(-a["logvar"]), log2pi=False)),
                 Mistake("std-as-variance", "the standard deviation used as the variance",
                         "(x - m)^2 is divided by sigma^2 = exp(s), not sigma = exp(s / 2)",
                         lambda a: _gau_loss(a, np.exp(-0.5 * a["logvar"]))),
                 Mistake("times-variance", "multiplied by the variance instead of divided",
                         "the squared error is scaled by 1 / sigma^2 = exp(-s)",
                         lambda a: _gau_loss(a, np.exp(a["logvar"]))))),
    _gau_grad("dmean", [_upstream("dloss", lambda a: -(a["x"] - a["mean"]) * np.exp(-a["logvar"])),
                        Mistake("variance-forgotten", "the 1 / variance forgotten",
                                "d/dm of (x - m)^2 e^-s / 2 is (m - x) e^-s",
                                lambda a: a["dloss"][:, None] * (a["mean"] - a["x"]))]),
    _gau_grad("dlogvar", [_upstream("dloss", lambda a: 0.5 * (1 - (a["x"] - a["mean"]) ** 2
                                                              * np.exp(-a["logvar"]))),
                          Mistake("plus-minus", "+ where - belongs", "d/ds of e^-s is -e^-s",
                                  lambda a: a["dloss"][:, None] * 0.5 * (
                                      1 + (a["x"] - a["mean"]) ** 2 * np.exp(-a["logvar"])))]),
    Exercise(("GAU-4",), "vae_ops", "logvar_floor_forward", "s", floor_cases,
             lambda fn, a: fn(a["a"], a["log_floor"]), lambda: ops.logvar_floor_forward,
             returns=("s", "cache"),
             backward=lambda c, a: ops.logvar_floor_backward(a["ds"], c), mistakes=(
                 Mistake("floor-not-added", "c forgotten: softplus(a - c) alone", "s = c + "
                         "softplus(a - c): without c, s tends to 0 instead of the floor c "
                         "below it, and to a - c instead of a above it",
                         lambda a: ops.softplus(_floor_back(a))),
                 Mistake("shift-forgotten", "softplus(a) where softplus(a - c) belongs",
                         "log(sigma^2_min + e^a) = c + log(1 + e^(a - c)): factoring e^c out "
                         "divides e^a by it", lambda a: a["log_floor"] + ops.softplus(a["a"])),
                 Mistake("hard-clamp", "a hard clamp max(a, c) where the soft floor belongs",
                         "the floor adds the variances, sigma^2 = sigma^2_min + e^a, so s lies "
                         "above both a and c; a clamp has zero gradient below the floor, and a "
                         "head stuck there never learns its way out",
                         lambda a: np.maximum(a["a"], a["log_floor"])),
                 Mistake("floor-as-variance", "log_floor used as the variance sigma^2_min",
                         "log_floor is c = log sigma^2_min, already a log: log(c + e^a) takes "
                         "the log of a negative number wherever e^a < -c",
                         lambda a: np.log(a["log_floor"] + np.exp(a["a"]))),
                 Mistake("floor-overflow", "log(exp(c) + exp(a)) overflows", "exp(a) is inf "
                         "for a > 709; c + softplus(a - c) never takes exp of a positive number",
                         lambda a: np.log(np.exp(a["log_floor"]) + np.exp(a["a"])),
                         stress=True),
                 Mistake("a-cached", "a cached where t = a - c belongs", "logvar_floor_backward "
                         "is not given c: it reads the cache as t = a - c, the sigmoid's "
                         "argument", lambda a: a["a"], cache=True))),
    Exercise(("GAU-5",), "vae_ops", "logvar_floor_backward", "da", lambda: floor_cases(False),
             lambda fn, a: fn(a["ds"], _floor_back(a)), lambda: ops.logvar_floor_backward,
             mistakes=(
                 Mistake("floor-derivative-forgotten", "the floor's derivative forgotten (taken "
                         "as 1)", "s = c + softplus(a - c) moves with a by sigma(a - c), in "
                         "(0, 1): ds/da fades the pull of (GAU-3) out near the floor",
                         lambda a: a["ds"]),
                 Mistake("sigma-complement", "1 - sigma(t) where sigma(t) belongs",
                         "softplus'(t) = sigma(t) (ACT-2); 1 - sigma(t) = sigma(-t) is the "
                         "slope of softplus(-t)",
                         lambda a: a["ds"] * (1 - ops.sigmoid(_floor_back(a)))),
                 Mistake("softplus-as-slope", "softplus(t) used as its own slope",
                         "the slope of softplus is sigma(t) (ACT-2)",
                         lambda a: a["ds"] * ops.softplus(_floor_back(a))))),
    Exercise(("GAU-6",), "vae_ops", "shared_forward", "s", shared_cases,
             lambda fn, a: fn(a["b"], a["n"]), lambda: ops.shared_forward,
             returns=("s", "cache"), mistakes=(
                 Mistake("not-broadcast", "b returned as it is", "s has one row per example, "
                         "(n, D), and every row is b", lambda a: a["b"]),)),
    Exercise(("GAU-6",), "vae_ops", "shared_backward", "db", shared_cases,
             lambda fn, a: fn(a["ds"]), lambda: ops.shared_backward, mistakes=(
                 Mistake("batch-sum-missing", "the sum over the batch missing", "b enters every "
                         "one of the n rows, so its gradient is the sum of the rows' gradients, "
                         "ds.sum(axis=0), of b's shape (D,)", lambda a: a["ds"]),
                 Mistake("one-row-only", "only the first row's gradient", "every row used b, "
                         "not only the first: sum ds over all n rows", lambda a: a["ds"][0]))),
    Exercise(("REP-1",), "vae_ops", "reparameterize_forward", "z", latent_cases,
             lambda fn, a: fn(a["mu"], a["logvar"], a["eps"]),
             lambda: ops.reparameterize_forward, returns=("z", "cache"),
             backward=lambda c, a: ops.reparameterize_backward(a["dz"], c), mistakes=(
                 Mistake(*VARIANCE_AS_STD, lambda a: a["mu"] + np.exp(a["logvar"]) * a["eps"]),
                 Mistake("logvar-as-std", "logvar used as the standard deviation",
                         "logvar is log sigma^2; sigma = exp(logvar / 2)",
                         lambda a: a["mu"] + a["logvar"] * a["eps"]))),
    _rep("dmu", [Mistake("std-in-dmu", "sigma * eps in dmu", "z = mu + sigma eps: dz/dmu = 1",
                         lambda a: a["dz"] * np.exp(0.5 * a["logvar"]) * a["eps"])]),
    _rep("dlogvar", [Mistake(*VARIANCE_AS_STD,
                             lambda a: a["dz"] * 0.5 * np.exp(a["logvar"]) * a["eps"]),
                     Mistake("eps-forgotten", "eps forgotten", "z moves with logvar through "
                             "sigma * eps, so eps stays in the derivative",
                             lambda a: a["dz"] * 0.5 * np.exp(0.5 * a["logvar"]))]),
    Exercise(("KL-1",), "vae_ops", "kl_standard_normal_forward", "kl",
             lambda: latent_cases(stress=True), lambda fn, a: fn(a["mu"], a["logvar"]),
             lambda: ops.kl_standard_normal_forward, returns=("kl", "cache"),
             backward=lambda c, a: ops.kl_standard_normal_backward(a["dkl"], c), mistakes=(
                 Mistake("exp-not-expm1", "exp where expm1 belongs (the -1 forgotten)",
                         "expm1(s) = exp(s) - 1; with exp(s) alone each unit's KL is 1/2 too "
                         "large, and the KL at the prior is J/2 instead of 0",
                         lambda a: _kl(a, lambda m, s: m * m + np.exp(s) - s)),
                 Mistake("logvar-sign", "+logvar where -logvar belongs", "the KL term is "
                         "mu^2 + exp(s) - s - 1: the log-variance enters with a minus",
                         lambda a: _kl(a, lambda m, s: m * m + np.expm1(s) + s)),
                 Mistake("expm1-precision", "exp(s) - s - 1 where expm1(s) - s belongs",
                         "right, but exp(s) - 1 rounds near s = 0, where the KL is smallest "
                         "and every digit is lost", lambda a: _kl(
                             a, lambda m, s: m * m + np.exp(s) - s - 1), stress=True,
                         status="approximate", section=NUMERICS["KL-1"]))),
    _kl_back("dmu", [_upstream("dkl", lambda a: a["mu"])]),
    _kl_back("dlogvar", [
        Mistake("exp-not-expm1", "exp where expm1 belongs (the -1 forgotten)",
                "d/ds (exp(s) - s) / 2 = (exp(s) - 1) / 2 = expm1(s) / 2",
                lambda a: a["dkl"][:, None] * 0.5 * np.exp(a["logvar"])),
        _upstream("dkl", lambda a: 0.5 * np.expm1(a["logvar"]))]),
]
