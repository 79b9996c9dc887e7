"""Exercises of adam.md and elbo.md: the optimisers' steps and the network's whole backward.

The optimisers are checked by their trajectories: a few steps from seeded gradients, recording
the moments and the displacement theta_t - theta_0 after each (the displacement, not theta, so
that a wrong update is measured against the update's own scale). The backward is checked on a
tiny VAE of each decoder, every weight and bias random, beta != 1 and the gradients' buffer
filled with NaN first, so that a gradient never written shows.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np

from .. import network, ops, optim
from ..config import VAEConfig
from ..layers import layout as make_layout
from ..params import Parameters
from .catalogue import TWO_PATHS, Mistake
from .compare import Case, Exercise

B1, B2, ADAM_EPS = 0.9, 0.999, 1e-8


def optimiser_cases() -> list[Case]:
    cases = []
    for k, scale in enumerate((1.0, 1e-3)):
        rng = np.random.default_rng(70 + k)
        cases.append(Case(f"gradients of scale {scale:g}", dict(
            theta=rng.normal(size=7), grads=scale * rng.normal(size=(4, 7)), lr=1e-2), {}))
    return cases


def _run_optimiser(cls, a, adam: bool = True):
    theta = a["theta"].copy()
    opt = (cls(theta.size, "float64", lr=a["lr"], beta1=B1, beta2=B2, eps=ADAM_EPS) if adam
           else cls(lr=a["lr"]))
    out: dict[str, list] = {"m": [], "v": [], "theta": []}
    for g in a["grads"]:
        opt.step(theta, g.copy())
        if adam:
            out["m"].append(np.array(opt.m, dtype=np.float64))
            out["v"].append(np.array(opt.v, dtype=np.float64))
        out["theta"].append(theta - a["theta"])
    return {k: np.stack(v) for k, v in out.items() if v}


def adam_variant(a, *, m_rule=None, v_rule=None, correct=(True, True), eps_inside=False,
                 root=True, in_place=True) -> dict[str, np.ndarray]:
    """Adam's trajectory with one rule changed: the reference when called without options."""
    m = v = d = 0.0
    out: dict[str, list] = {"m": [], "v": [], "theta": []}
    for t, g in enumerate(a["grads"], start=1):
        m = m_rule(m, g) if m_rule else B1 * m + (1 - B1) * g
        v = v_rule(v, g) if v_rule else B2 * v + (1 - B2) * g * g
        m_hat = m / (1 - B1**t) if correct[0] else m
        v_hat = v / (1 - B2**t) if correct[1] else v
        denom = np.sqrt(v_hat + ADAM_EPS) if eps_inside else (
            np.sqrt(v_hat) if root else v_hat) + ADAM_EPS
        d = d - a["lr"] * m_hat / denom if in_place else 0.0 * g
        for k, val in (("m", m), ("v", v), ("theta", d)):
            out[k].append(val)
    return {k: np.stack(v) for k, v in out.items()}


def _adam(labels, output, mistakes) -> Exercise:
    return Exercise(labels, "vae_optim", "Adam.step", output, optimiser_cases, _run_optimiser,
                    lambda: optim.Adam,
                    mistakes=tuple(Mistake(k, t, w, lambda a, o=opts: adam_variant(a, **o)[output])
                                   for k, t, w, opts in mistakes))


# ----------------------------------------------------------------------------- backward
def _model_case(name: str, decoder: str, activation: str, B: int, beta: float, seed: int):
    cfg = VAEConfig(n_input=7, hidden=(5,), n_latent=3, decoder=decoder, activation=activation,
                    dtype="float64", backend="numpy")
    layout = make_layout(cfg)
    params = Parameters(layout.shapes(), "float64")
    rng = np.random.default_rng(seed)
    params.flat[:] = rng.normal(0.0, 0.5, params.size)  # weights and non-zero biases
    x = rng.random((B, 7)) if decoder == "gaussian" else (rng.random((B, 7)) < 0.5) * 1.0
    segments, start = {}, 0
    for pname, p in params.items():
        segments[pname], start = slice(start, start + p.size), start + p.size
    return Case(name, dict(params=params, layout=layout, x=x, eps=rng.normal(size=(B, 3)),
                           beta=beta), dict(B=B, D=7, J=3), segments=segments)


def backward_cases() -> list[Case]:
    return [_model_case("a Bernoulli VAE 7-5-3 (softplus), B=4, beta=0.7", "bernoulli",
                        "softplus", 4, 0.7, 80),
            _model_case("a Gaussian VAE 7-5-3 (tanh), B=3, beta=1.3", "gaussian", "tanh", 3, 1.3,
                        81)]


def _run_backward(fn, a, patch=None, beta=None):
    _, _, _, cache = network.forward(a["params"], a["layout"], a["x"], a["eps"], a["beta"], ops)
    if beta is not None:
        cache = dataclasses.replace(cache, beta=beta)
    namespace = types.SimpleNamespace(**{n: getattr(ops, n) for n in dir(ops) if n[0] != "_"})
    if patch:
        patch(namespace, a["params"])
    grads = a["params"].zeros_like()
    grads.flat[:] = np.nan
    fn(cache, grads, namespace)
    return grads.flat.copy()


def _scaled(name: str, by_batch):
    def patch(ns, params):
        f = getattr(ops, name)
        setattr(ns, name, lambda d, c: f(d * len(d), c) if by_batch else f(0 * d, c))
    return patch


def _drop_head_dx(head: str):
    def patch(ns, params):
        if head not in params.shapes:
            return

        def dense_backward(dy, cache, need_dx=True):
            dx, dW, db = ops.dense_backward(dy, cache, need_dx)
            return (0 * dx if cache[1] is params[head] else dx), dW, db
        ns.dense_backward = dense_backward
    return patch


def _bwd(key, title, why, section=None, **kw):
    return Mistake(key, title, why, lambda a: _run_backward(network.backward, a, **kw),
                   section=section)


def _both_recon(ns, params):
    _scaled("bce_with_logits_backward", True)(ns, params)
    _scaled("gaussian_nll_backward", True)(ns, params)


BACKWARD_MISTAKES = (
    _bwd("kl-path-missing", "the KL path forgotten", "mu and logvar reach the loss twice, "
         "through z and through the KL term; add both", TWO_PATHS, beta=0.0),
    _bwd("sample-path-missing", "the sample path forgotten", "mu and logvar also reach the loss "
         "through z = mu + sigma eps (REP-2, REP-3); add that path", TWO_PATHS,
         patch=_scaled("reparameterize_backward", False)),
    _bwd("beta-ignored", "beta ignored in the KL path", "each example's KL enters the loss "
         "with weight beta / B", beta=1.0),
    _bwd("kl-sum-over-B", "the KL path's 1/B missing", "each example's KL enters the mean "
         "with weight beta / B, not beta", patch=_scaled("kl_standard_normal_backward", True)),
    _bwd("recon-sum-over-B", "the reconstruction's 1/B missing", "each example's NLL enters "
         "the mean with weight 1 / B", patch=_both_recon),
    _bwd("heads-not-added", "only one decoder head's gradient kept", "the Gaussian decoder's "
         "mean and log-variance heads read the same h: dh is the sum of both heads' dx",
         patch=_drop_head_dx("dec.mu.W")),
    *(_bwd("enc-heads-not-added", "only one encoder head's gradient kept", "enc.mu and "
           "enc.logvar read the same h: the encoder's dh is dh_mu + dh_logvar",
           patch=_drop_head_dx(head)) for head in ("enc.mu.W", "enc.logvar.W")),
)

CORRECT_BOTH = "divide m by 1 - beta1^t and v by 1 - beta2^t; early steps are far off without"
EXERCISES = [
    _adam(("ADAM-1",), "m", [
        ("one-minus-beta-forgotten", "(1 - beta1) forgotten", "m is an exponential moving "
         "average: beta1 m + (1 - beta1) g", dict(m_rule=lambda m, g: B1 * m + g)),
        ("betas-swapped", "beta1 and 1 - beta1 swapped", "the old moment keeps weight beta1",
         dict(m_rule=lambda m, g: (1 - B1) * m + B1 * g))]),
    _adam(("ADAM-2",), "v", [
        ("grad-not-squared", "g where g^2 belongs", "v is the moving average of g^2",
         dict(v_rule=lambda v, g: B2 * v + (1 - B2) * g)),
        ("beta1-in-v", "beta1 where beta2 belongs", "v averages with its own beta2",
         dict(v_rule=lambda v, g: B1 * v + (1 - B1) * g * g))]),
    _adam(("ADAM-3", "ADAM-4"), "theta", [
        ("no-bias-correction", "Adam without bias correction", CORRECT_BOTH,
         dict(correct=(False, False))),
        ("m-correction-only", "only m bias-corrected", CORRECT_BOTH, dict(correct=(True, False))),
        ("v-correction-only", "only v bias-corrected", CORRECT_BOTH, dict(correct=(False, True))),
        ("eps-inside-sqrt", "epsilon inside the square root", "the step divides by "
         "sqrt(v_hat) + eps", dict(eps_inside=True)),
        ("no-sqrt", "v_hat where sqrt(v_hat) belongs", "the step divides by the root of the "
         "second moment", dict(root=False)),
        ("not-in-place", "theta not updated in place", "step() must change the caller's "
         "array: theta -= ... (theta = theta - ... rebinds a local name)",
         dict(in_place=False))]),
    Exercise(("SGD-1",), "vae_optim", "SGD.step", "theta", optimiser_cases,
             lambda cls, a: _run_optimiser(cls, a, adam=False), lambda: optim.SGD, mistakes=(
                 Mistake("lr-forgotten", "the learning rate forgotten", "theta -= lr * grad",
                         lambda a: -np.cumsum(a["grads"], axis=0)),)),
    Exercise(("ELBO-3",), "vae_network", "backward", "grads", backward_cases, _run_backward,
             lambda: network.backward, mistakes=BACKWARD_MISTAKES),
]
