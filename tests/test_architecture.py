"""The structure the features stand on: one engine interface, no import cycles, no upward
arrows, no module reading another's private names, and both engines agreeing method by method."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numpyvae
from numpyvae import layers
from numpyvae.config import VAEConfig
from numpyvae.engines import engine_class
from numpyvae.fast import FastEngine
from numpyvae.gradcheck import randomize_biases
from numpyvae.model import VAE
from numpyvae.network import ReferenceEngine

PACKAGE = Path(numpyvae.__file__).resolve().parent
# lower rank never imports higher rank (the data flow of the GUIDE). plots draws arrays and
# any object with the model's methods (a Protocol), so it sits low: it imports no model code.
RANK = {
    "errors": 0, "atomic": 0, "argtypes": 0, "config": 0, "ops": 0, "latent": 0, "schedules": 1,
    "idx": 1, "batches": 1, "data": 1, "layers": 1, "params": 1, "optim": 1, "kernels": 1,
    "gradcheck": 1, "checkpoint": 2, "network": 2, "fast": 2, "fast_adam": 2, "workspace": 2,
    "engines": 3, "model": 4,
    "plots": 1, "evaluate": 5, "runs": 5, "training": 6, "pretrained": 6, "demo": 7, "reproduce": 7,
    "demo_window": 7, "exercises": 7, "cli": 8, "__init__": 9, "__main__": 9,
}


def rank(mod: str) -> int:
    """The module's layer; the demo's helper modules (demo_*) share the demo's."""
    return RANK["demo"] if mod.startswith("demo") else RANK[mod]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts)


def top(name: str) -> str:
    return name.split(".")[0]


def imports_of(path: Path) -> set[str]:
    """numpyvae modules ("model", "kernels.fused", ...) imported anywhere in ``path``, at top
    level or inside functions."""
    package = module_name(path).split(".")[:-1]  # "kernels.fused" -> ["kernels"]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                out.add(".".join([*base, node.module]))
            else:
                out.update(".".join([*base, a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numpyvae."):
            out.add(node.module[len("numpyvae."):])
        elif isinstance(node, ast.Import):
            out.update(a.name[len("numpyvae."):] for a in node.names
                       if a.name.startswith("numpyvae."))
    return out


def graph() -> dict[str, set[str]]:
    """top-level module -> the top-level numpyvae modules it imports."""
    g: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        mod = module_name(path)
        deps = {top(d) for d in imports_of(path)} - {top(mod)}
        g.setdefault(top(mod) if "." in mod else mod, set()).update(deps)
    return g


def test_no_import_cycles_and_no_upward_arrows():
    """data -> ops/kernels -> engines -> model -> train -> plots/cli: every arrow points down."""
    g = graph()
    for mod, deps in g.items():
        assert mod in RANK or mod.startswith("demo"), f"{mod} has no layer; add it to RANK"
        for dep in deps:
            assert rank(dep) <= rank(mod), f"upward arrow: {mod} (rank {rank(mod)}) imports " \
                                           f"{dep} (rank {rank(dep)})"
    # a cycle would need an arrow between two modules of one rank in both directions
    for mod, deps in g.items():
        for dep in deps:
            assert mod not in g.get(dep, set()), f"import cycle {mod} <-> {dep}"


def test_no_module_reads_another_modules_private_names():
    """``from .x import _y`` and ``x._y`` across numpyvae modules are not allowed."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = module_name(path)
        modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and n.level for a in n.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                same_package = node.level == 2 or (node.level == 1 and "." not in own)
                if not node.module.startswith("_") or not same_package:
                    offenders += [f"{own}: from {node.module} import {a.name}"
                                  for a in node.names if a.name.startswith("_")
                                  and not a.name.startswith("__")]
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offenders.append(f"{own}: {node.value.id}.{node.attr}")
    assert not offenders, offenders


def test_ops_and_config_import_only_numpy():
    for name in ("ops", "config", "latent"):
        path = PACKAGE / f"{name}.py"
        assert not imports_of(path), f"{name} imports {imports_of(path)}"


def test_training_module_is_not_shadowed():
    """``import numpyvae.training`` is the module; ``numpyvae.train`` the function."""
    out = subprocess.run([sys.executable, "-c", "import numpyvae.training as t, numpyvae; "
                          "print(type(t).__name__, callable(numpyvae.train), "
                          "t.train is numpyvae.train)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["module", "True", "True"]


ENGINE_METHODS = ("forward_backward", "elbo_terms", "decoder_nll", "encode", "decode")


def test_both_engines_implement_the_interface():
    for cls in (ReferenceEngine, FastEngine):
        for method in ENGINE_METHODS:
            assert callable(getattr(cls, method)), f"{cls.__name__}.{method}"
        assert hasattr(cls, "Adam")
    assert engine_class("numpy") is ReferenceEngine
    assert engine_class("numba") is FastEngine
    with pytest.raises(ValueError, match="backend='torch' is not supported"):
        engine_class("torch")


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("hidden", [(), (7, 5)])
def test_engines_agree_method_by_method(decoder, hidden):
    """(DENSE-1) (REP-1) (KL-1) (BER-2) (GAU-1) encode, decode, elbo_terms and decoder_nll of
    the fused engine equal the reference's, float64, same parameters."""
    rng = np.random.default_rng(0)
    vaes = [VAE(n_input=12, hidden=hidden, n_latent=3, decoder=decoder, dtype="float64",
                seed=1, backend=b) for b in ("numpy", "numba")]
    for vae in vaes:
        randomize_biases(vae, np.random.default_rng(5))
    X = rng.random((9, 12))
    eps, z = rng.standard_normal((9, 3)), rng.standard_normal((9, 3))
    ref, fast = (v.engine for v in vaes)
    for a, b in zip(ref.encode(X), fast.encode(X), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(ref.decode(z), fast.decode(z), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(ref.elbo_terms(X, eps), fast.elbo_terms(X, eps), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(ref.decoder_nll(X, z), fast.decoder_nll(X, z), rtol=1e-12)


def test_layout_is_the_one_description_of_the_layers():
    cfg = VAEConfig(n_input=10, hidden=(8, 6), n_latent=2, decoder="gaussian")
    lay = layers.layout(cfg)
    assert [d.name for d in lay.enc_hidden] == ["enc.h1", "enc.h2"]
    assert [d.name for d in lay.dec_hidden] == ["dec.h1", "dec.h2"]
    assert [(d.fan_in, d.fan_out) for d in lay.dec_hidden] == [(2, 6), (6, 8)]
    assert [d.name for d in lay.dec_heads] == ["dec.mu", "dec.logvar"]
    vae = VAE(cfg)
    assert list(vae.parameters()) == list(lay.shapes())
    assert vae.params.size == lay.size


def test_substituted_ops_need_the_reference_engine():
    """exercises substitute ops into the reference engine only; the model says so."""
    from numpyvae import ops

    cfg = VAEConfig(n_input=6, hidden=(4,), n_latent=2, backend="numba")
    with pytest.raises(ValueError, match="backend='numpy'"):
        VAE.from_config(cfg, ops=ops)
    vae = VAE.from_config(VAEConfig(n_input=6, hidden=(4,), n_latent=2, backend="numpy",
                                    dtype="float64"), ops=ops)
    ref = VAE(n_input=6, hidden=(4,), n_latent=2, backend="numpy", dtype="float64")
    X = (np.random.default_rng(0).random((3, 6)) < 0.5).astype(float)
    eps = np.random.default_rng(1).standard_normal((3, 2))
    assert vae.loss_and_gradients(X, eps)[0] == ref.loss_and_gradients(X, eps)[0]
