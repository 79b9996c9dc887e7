"""Exercises of layers.md and init.md: the dense layer, the activations, the initialisers.

Every case is seeded float64 with B, n_in, n_out (or B, H) all different, so a transposed
product raises or returns the transposed shape instead of passing by accident.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .catalogue import Mistake
from .compare import Case, Exercise


def dense_cases() -> list[Case]:
    cases = []
    for seed, (B, n_in, n_out) in enumerate(((4, 6, 3), (3, 5, 7))):
        rng = np.random.default_rng(10 + seed)
        arrays = dict(x=rng.normal(size=(B, n_in)), W=rng.normal(size=(n_in, n_out)),
                      b=rng.normal(size=n_out), dy=rng.normal(size=(B, n_out)))
        cases.append(Case(f"B={B}, n_in={n_in}, n_out={n_out}", arrays,
                          dict(B=B, n_in=n_in, n_out=n_out)))
    return cases


def act_cases(stress: bool = False) -> list[Case]:
    cases = []
    for seed, (B, H) in enumerate(((4, 6), (3, 5))):
        rng = np.random.default_rng(20 + seed)
        a = rng.normal(0.0, 2.0, (B, H))
        cases.append(Case(f"a of shape ({B}, {H})", dict(a=a, dh=rng.normal(size=(B, H))),
                          dict(B=B, H=H)))
    if stress:  # softplus only: where the naive forms overflow or lose everything
        rng = np.random.default_rng(22)
        for name, a in (("large positive a (up to 800)", rng.uniform(30, 800, (3, 4))),
                        ("large negative a (-45 to -30)", rng.uniform(-45, -30, (3, 4)))):
            cases.append(Case(name, dict(a=a, dh=rng.normal(size=a.shape)), dict(B=3, H=4),
                              stress=True))
    return cases


def _dense(output: str, mistakes=()) -> Exercise:
    return Exercise(("DENSE-" + {"dW": "2", "db": "3", "dx": "4"}[output],), "vae_ops",
                    "dense_backward", output, dense_cases,
                    lambda fn, a: fn(a["dy"], (a["x"], a["W"])), lambda: ops.dense_backward,
                    returns=("dx", "dW", "db"), mistakes=tuple(mistakes))


def _sigma(a):
    return 1.0 / (1.0 + np.exp(-a))


FORGOT = ("derivative-forgotten", "the activation's derivative forgotten",
          "the gradient must be multiplied by the activation's slope at a")


def _act_backward(label: str, name: str, cache, mistakes) -> Exercise:
    return Exercise((label,), "vae_ops", f"{name}_backward", "da", act_cases,
                    lambda fn, a: fn(a["dh"], cache(a["a"])),
                    lambda: getattr(ops, f"{name}_backward"), mistakes=tuple(mistakes))


def _cache_misread(f):
    return Mistake("cache-misread", "the cache read as the pre-activation",
                   "the forward caches the activation's output, not a; the slope must be "
                   "written in terms of that output", lambda a: a["dh"] * f(a))


def _init_cases() -> list[Case]:
    return [Case(f"fan_in={i}, fan_out={o}", dict(fan_in=i, fan_out=o, seed=30 + k),
                 dict(n_in=i, n_out=o)) for k, (i, o) in enumerate(((30, 12), (7, 50)))]


def _uniform(a, r, transposed=False):
    shape = (a["fan_out"], a["fan_in"]) if transposed else (a["fan_in"], a["fan_out"])
    return np.random.default_rng(a["seed"]).uniform(-r, r, size=shape)


def _run_init(fn, a):
    return fn(a["fan_in"], a["fan_out"], np.random.default_rng(a["seed"]), dtype=np.float64)


def _init_mistakes(right: str) -> list[Mistake]:
    fans = {"INIT-1": lambda a: 2.0 / (a["fan_in"] + a["fan_out"]),
            "INIT-2": lambda a: 2.0 / a["fan_in"]}
    var = fans[right]
    other = "INIT-2" if right == "INIT-1" else "INIT-1"
    names = {"INIT-1": "Xavier's 2 / (fan_in + fan_out)", "INIT-2": "He's 2 / fan_in"}
    return [
        Mistake("std-as-range", "the standard deviation used as the range",
                "U(-r, r) has variance r^2 / 3, so r = sqrt(3 * variance), not sqrt(variance)",
                lambda a: _uniform(a, math.sqrt(var(a)))),
        Mistake("other-init", f"the other initialiser ({other})",
                f"this initialiser's variance is {names[right]}",
                lambda a: _uniform(a, math.sqrt(3 * fans[other](a)))),
        Mistake("normal-not-uniform", "a normal distribution where a uniform one belongs",
                "draw rng.uniform(-r, r, size=(fan_in, fan_out)) with the range r",
                lambda a: np.random.default_rng(a["seed"]).normal(
                    0.0, math.sqrt(var(a)), (a["fan_in"], a["fan_out"]))),
        Mistake("transposed", "(fan_out, fan_in) where (fan_in, fan_out) belongs",
                "weights are (fan_in, fan_out) so that y = x W is batch-first",
                lambda a: _uniform(a, math.sqrt(3 * var(a)), transposed=True)),
    ] + ([Mistake("fan-out", "fan_out where fan_in belongs", "He's variance is 2 / fan_in: "
                  "it keeps the variance of the forward pass, which sums fan_in inputs",
                  lambda a: _uniform(a, math.sqrt(6.0 / a["fan_out"])))]
         if right == "INIT-2" else [])


EXERCISES = [
    Exercise(("DENSE-1",), "vae_ops", "dense_forward", "y", dense_cases,
             lambda fn, a: fn(a["x"], a["W"], a["b"]), lambda: ops.dense_forward,
             returns=("y", "cache"),
             backward=lambda c, a: ops.dense_backward(a["dy"], c), mistakes=(
                 Mistake("bias-forgotten", "the bias forgotten", "y = x W + b: each row gets b",
                         lambda a: a["x"] @ a["W"]),)),
    _dense("dW", [Mistake("transposed", "a transposed product",
                          "dW has W's shape (n_in, n_out): x.T @ dy",
                          lambda a: a["dy"].T @ a["x"])]),
    _dense("db", [Mistake("bias-missing", "the bias gradient missing (zero)",
                          "b is added to every row, so db is the column sums of dy",
                          lambda a: np.zeros(a["dy"].shape[1])),
                  Mistake("wrong-axis", "summed over the wrong axis",
                          "db has b's shape (n_out,): sum dy over the batch, axis 0",
                          lambda a: a["dy"].sum(axis=1))]),
    _dense("dx"),
    Exercise(("ACT-1",), "vae_ops", "softplus", "h", lambda: act_cases(stress=True),
             lambda fn, a: fn(a["a"]), lambda: ops.softplus, mistakes=(
                 Mistake("softplus-overflow", "log(1 + exp(a)) overflows",
                         "exp(a) is inf for a > 709; max(a, 0) + log1p(exp(-|a|)) never takes "
                         "exp of a positive number", lambda a: np.log(1.0 + np.exp(a["a"])),
                         stress=True),
                 Mistake("log-not-log1p", "log(1 + x) where log1p(x) belongs",
                         "1 + exp(-|a|) rounds to 1 for a < -37, so log gives 0 where softplus "
                         "is e^a; log1p keeps it",
                         lambda a: np.maximum(a["a"], 0) + np.log(1 + np.exp(-np.abs(a["a"]))),
                         stress=True, status="approximate"))),
    _act_backward("ACT-2", "softplus", lambda a: a, [
        Mistake(*FORGOT, lambda a: a["dh"]),
        Mistake("sigma-complement", "1 - sigma(a) where sigma(a) belongs",
                "softplus'(a) = e^a / (1 + e^a) = sigma(a); 1 - sigma(a) = sigma(-a) is the "
                "slope of softplus(-a)", lambda a: a["dh"] * (1 - _sigma(a["a"]))),
        Mistake("softplus-as-slope", "softplus(a) used as its own slope",
                "the slope of softplus is sigma(a)", lambda a: a["dh"] * ops.softplus(a["a"]))]),
    Exercise(("ACT-3",), "vae_ops", "sigmoid", "p", act_cases, lambda fn, a: fn(a["a"]),
             lambda: ops.sigmoid, mistakes=(
                 Mistake("sigma-complement", "1 - sigma(a) where sigma(a) belongs (branches "
                         "swapped)", "with e = exp(-|a|): sigma(a) = 1 / (1 + e) for a >= 0 and "
                         "e / (1 + e) for a < 0", lambda a: 1 - _sigma(a["a"])),)),
    _act_backward("ACT-4", "sigmoid", ops.sigmoid, [
        Mistake(*FORGOT, lambda a: a["dh"]),
        Mistake("sigma-complement", "sigma(a) where 1 - sigma(a) belongs",
                "sigma'(a) = sigma(a) (1 - sigma(a)) = p (1 - p)",
                lambda a: a["dh"] * _sigma(a["a"]) ** 2),
        _cache_misread(lambda a: _sigma(_sigma(a["a"])) * (1 - _sigma(_sigma(a["a"]))))]),
    _act_backward("ACT-5", "tanh", np.tanh, [
        Mistake(*FORGOT, lambda a: a["dh"]),
        Mistake("tanh-not-squared", "1 - h where 1 - h^2 belongs", "tanh'(a) = 1 - tanh(a)^2",
                lambda a: a["dh"] * (1 - np.tanh(a["a"]))),
        _cache_misread(lambda a: 1 - np.tanh(np.tanh(a["a"])) ** 2)]),
    Exercise(("ACT-6",), "vae_ops", "relu_forward", "h", act_cases, lambda fn, a: fn(a["a"]),
             lambda: ops.relu_forward, returns=("h", "cache"),
             backward=lambda c, a: ops.relu_backward(a["dh"], c)),
    _act_backward("ACT-6", "relu", lambda a: a, [
        Mistake(*FORGOT, lambda a: a["dh"]),
        Mistake("relu-of-gradient", "relu applied to the gradient",
                "the mask 1[a > 0] comes from the cached a, not from the sign of dh",
                lambda a: np.maximum(a["dh"], 0))]),
    Exercise(("INIT-1",), "vae_ops", "xavier_uniform", "W", _init_cases, _run_init,
             lambda: ops.xavier_uniform, mistakes=tuple(_init_mistakes("INIT-1"))),
    Exercise(("INIT-2",), "vae_ops", "he_uniform", "W", _init_cases, _run_init,
             lambda: ops.he_uniform, mistakes=tuple(_init_mistakes("INIT-2"))),
]
