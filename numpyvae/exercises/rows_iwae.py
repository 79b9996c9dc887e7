"""Exercises of the k-sample terms: importance_sampling.md and iwae_training.md.

The shapes are those of ``network.forward_k``: noise and samples (k, B, J), one logvar (B, J)
per example shared by its k samples, log-weights (k, B), with k, B and J all different. The
log-weights are MNIST's (about -90); the stress cases hold log-weights where every exp
underflows (-1000 to -800) or overflows (a Gaussian decoder's +1000 to +3000, as on Frey).
"""

from __future__ import annotations

import numpy as np

from .. import ops
from .catalogue import IS, Mistake
from .compare import Case, Exercise

LOG_DENSITIES = (IS, "The Gaussian log-densities")


def latent_k_cases() -> list[Case]:
    cases = []
    for seed, (k, B, J) in enumerate(((5, 4, 3), (3, 2, 6))):
        rng = np.random.default_rng(100 + seed)
        mu, logvar = rng.normal(size=(B, J)), rng.normal(0.0, 0.7, (B, J))
        eps = rng.normal(size=(k, B, J))
        z = mu + np.exp(0.5 * logvar) * eps  # (REP-1), as forward_k draws them
        cases.append(Case(f"k={k}, B={B}, J={J}", dict(z=z, eps=eps, logvar=logvar,
                                                       dr=rng.normal(size=(k, B))),
                          {"k": k, "B": B, "J": J}))
    return cases


def log_w_cases(stress: bool = False) -> list[Case]:
    cases = []
    for seed, (k, B) in enumerate(((5, 4), (7, 3))):
        rng = np.random.default_rng(110 + seed)
        cases.append(Case(f"k={k}, B={B}, log-weights near -90",
                          dict(log_w=rng.normal(-90.0, 5.0, (k, B)), dL=rng.normal(size=B)),
                          {"k": k, "B": B}))
    if stress:
        rng = np.random.default_rng(112)
        for name, (lo, hi) in (("log-weights of -1000 to -800 (every exp underflows)",
                                (-1000.0, -800.0)),
                               ("log-weights of +1000 to +3000 (every exp overflows)",
                                (1000.0, 3000.0))):
            cases.append(Case(name, dict(log_w=rng.uniform(lo, hi, (6, 3)),
                                         dL=rng.normal(size=3)), {"k": 6, "B": 3}, stress=True))
    return cases


def _ratio(a, lv=0.5, zz=-0.5, sq=None, const=0.0):
    """(IWAE-4) with one coefficient changed: the reference when called without options."""
    z, eps = a["z"], a["eps"]
    sq = z if sq is None else sq(a)
    return (lv * a["logvar"].sum(-1) + 0.5 * (eps * eps).sum(-1) + zz * (sq * sq).sum(-1)
            + const * 0.5 * z.shape[-1] * ops.LOG_2PI)


LOG_2PI_ONE_SIDE = ("log-2pi-one-side", "log(2 pi) in one density only",
                    "the log 2 pi terms of the two Gaussian densities (IWAE-3) cancel in r = "
                    "log p(z) - log q(z|x) only if both carry one: keep both or drop both")


def _lse(log_w):
    m = log_w.max(axis=0)
    return m, np.exp(log_w - m)


def _weights(a):
    return ops.log_mean_exp_forward(a["log_w"])[1]


def _ratio_back(output, mistakes) -> Exercise:
    return Exercise(("IWAE-6",), "vae_ops", "log_prior_ratio_backward", output, latent_k_cases,
                    lambda fn, a: fn(a["dr"], a["z"]), lambda: ops.log_prior_ratio_backward,
                    returns=("dz", "dlogvar"), mistakes=tuple(mistakes), part=output)


def _share(a, dr):
    return 0.5 * np.broadcast_to(dr[:, None], a["logvar"].shape)


EXERCISES = [
    Exercise(("IWAE-4",), "vae_ops", "log_prior_ratio_forward", "r", latent_k_cases,
             lambda fn, a: fn(a["z"], a["eps"], a["logvar"]),
             lambda: ops.log_prior_ratio_forward, returns=("r", "cache"),
             backward=lambda c, a: ops.log_prior_ratio_backward(a["dr"], c), mistakes=(
                 Mistake(*LOG_2PI_ONE_SIDE, lambda a: _ratio(a, const=-1.0),
                         section=LOG_DENSITIES),
                 Mistake(*LOG_2PI_ONE_SIDE, lambda a: _ratio(a, const=1.0),
                         section=LOG_DENSITIES),
                 Mistake("z2-sign", "+z^2 / 2 where -z^2 / 2 belongs", "log p(z) = -1/2 sum "
                         "z^2 (+ a constant): the prior's square enters r with a minus",
                         lambda a: _ratio(a, zz=0.5)),
                 Mistake("logvar-half-missing", "logvar without its 1/2", "-log q(z|x) = 1/2 "
                         "sum (logvar + eps^2) (+ a constant): the log-determinant is halved "
                         "like the square", lambda a: _ratio(a, lv=1.0)),
                 Mistake("logvar-sign", "-logvar / 2 where +logvar / 2 belongs", "r subtracts "
                         "log q(z|x) = -1/2 sum (logvar + eps^2) (+ a constant), so logvar "
                         "enters r with a plus", lambda a: _ratio(a, lv=-0.5)),
                 Mistake("eps2-for-z2", "eps^2 where z^2 belongs (the same square in both "
                         "densities)", "the prior is evaluated at the sample z itself, "
                         "-z^2 / 2; eps^2 is q's square, (z - mu)^2 / sigma^2, and the two "
                         "cancel only if you write the same one twice",
                         lambda a: _ratio(a, sq=lambda a: a["eps"])))),
    _ratio_back("dz", [
        Mistake("dz-sign", "the sign of dz flipped", "d/dz of -z^2 / 2 is -z: the prior pulls "
                "every sample towards 0, dz = -dr z", lambda a: a["dr"][..., None] * a["z"]),
        Mistake("upstream-forgotten", "the upstream gradient dr forgotten", "each sample's "
                "row is scaled by its dr (k, B): -dr[..., None] * z", lambda a: -a["z"]),
        Mistake("half-kept", "an extra 1/2 in dz", "d/dz of -z^2 / 2 is -z: the 2 of the "
                "square cancels the 1/2", lambda a: -0.5 * a["dr"][..., None] * a["z"])]),
    _ratio_back("dlogvar", [
        Mistake("samples-not-summed", "the sum over the k samples missing in dlogvar",
                "the k samples of an example share its logvar (B, J), so its gradient is the "
                "sum over the samples, 1/2 dr.sum(axis=0), of logvar's shape",
                lambda a: 0.5 * np.broadcast_to(a["dr"][..., None], a["z"].shape)),
        Mistake("first-sample-only", "only the first sample's gradient in dlogvar",
                "every one of the k samples uses logvar: sum dr over all of them",
                lambda a: _share(a, a["dr"][0]))]),
    Exercise(("IWAE-2",), "vae_ops", "log_mean_exp_forward", "L",
             lambda: log_w_cases(stress=True), lambda fn, a: fn(a["log_w"]),
             lambda: ops.log_mean_exp_forward, returns=("L", "cache"),
             backward=lambda c, a: ops.log_mean_exp_backward(a["dL"], c), mistakes=(
                 Mistake("log-k-forgotten", "the log of the sum where the log of the mean "
                         "belongs (the -log k forgotten)", "L_k = log (1/k) sum_i w_i: "
                         "without the -log k the bound rises by log k with k, whatever the "
                         "model", lambda a: (lambda m, e: m + np.log(e.sum(0)))(*_lse(a["log_w"]))),
                 Mistake("max-not-added-back", "the max M not added back", "log sum_i e^l_i "
                         "= M + log sum_i e^(l_i - M): the shift taken out of every exponent "
                         "comes back outside the log", lambda a: np.log(
                             _lse(a["log_w"])[1].sum(0)) - np.log(len(a["log_w"]))),
                 Mistake("mean-of-logs", "the mean of the log-weights", "(1/k) sum_i log w_i "
                         "is the k-sample ELBO, below L_k by Jensen's inequality; L_k is the "
                         "log of the mean of the weights", lambda a: a["log_w"].mean(axis=0)),
                 Mistake("max-shift-forgotten", "log(mean(exp(log_w))) without the shift",
                         "exp underflows to 0 for log-weights below -745 (log 0 = -inf) and "
                         "overflows for those above 709; subtract the max M first, so that "
                         "every exponent is <= 0 and the largest term is 1",
                         lambda a: np.log(np.mean(np.exp(a["log_w"]), axis=0)), stress=True),
                 Mistake("weights-unnormalised", "the unnormalised weights e^(l_i - M) cached",
                         "the cache is the normalised weights w~ = e / s, which sum to 1 over "
                         "the k samples: the backward multiplies dL by them (IWAE-5)",
                         lambda a: _lse(a["log_w"])[1], cache=True),
                 Mistake("log-weights-cached", "the log-weights cached", "the backward reads "
                         "the cache as the normalised weights w~ = softmax(log_w) (IWAE-5)",
                         lambda a: a["log_w"], cache=True))),
    Exercise(("IWAE-5",), "vae_ops", "log_mean_exp_backward", "dlog_w", log_w_cases,
             lambda fn, a: fn(a["dL"], _weights(a)), lambda: ops.log_mean_exp_backward,
             mistakes=(
                 Mistake("dL-itself", "dL itself, one number per example", "each of the k "
                         "log-weights gets its share of dL: dL * w~, of log_w's shape (k, B)",
                         lambda a: a["dL"]),
                 Mistake("uniform-weights", "uniform weights 1/k (the k-sample ELBO's "
                         "gradient)", "1/k per sample is the gradient of the mean of the "
                         "log-weights, the k-sample ELBO (ELBO-4); the log of the mean weighs "
                         "each sample by its normalised weight w~_i",
                         lambda a: np.broadcast_to(a["dL"] / len(a["log_w"]), a["log_w"].shape)),
                 Mistake("weights-forgotten", "dL copied to every sample (the weights "
                         "forgotten)", "each sample's share is its normalised weight w~_i, "
                         "and the shares sum to 1: dL * w~",
                         lambda a: np.broadcast_to(a["dL"], a["log_w"].shape)),
                 Mistake("unnormalised-weights", "the weights relative to their mean, "
                         "w_i / mean(w), where w_i / sum(w) belongs", "the 1/k of the mean "
                         "cancels between the numerator and the denominator: dlog_w_i = dL "
                         "w_i / sum_i' w_i' = dL w~_i, and the w~_i sum to 1",
                         lambda a: len(a["log_w"]) * a["dL"] * _weights(a)),
                 Mistake("softmax-twice", "the softmax of the cache", "the cache already "
                         "holds the normalised weights w~ = softmax(log_w); a second softmax "
                         "flattens them", lambda a: a["dL"] * (lambda w: np.exp(w) / np.exp(
                             w).sum(0))(_weights(a))))),
]
