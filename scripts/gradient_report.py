"""Print the maximum relative gradient error of every op and of the whole ELBO (float64).

    python scripts/gradient_report.py

Each op is checked as in tests/test_ops.py: f = sum(forward(inputs) * dout) against its
backward; the whole model as in tests/test_model.py, for both decoders, all three activations
and both backends.
"""

import numpy as np

from numpyvae import VAE, ops
from numpyvae.gradcheck import check_gradients, check_model, randomize_biases


def op_error(forward, backward, inputs, names, rng):
    out, cache = forward(*inputs.values())
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    analytic = {n: g for n, g in zip(names, grads, strict=True) if n is not None}
    report = check_gradients(lambda: float(np.sum(forward(*inputs.values())[0] * dout)),
                             {n: inputs[n] for n in analytic}, analytic)
    return report.max_rel_error


def main() -> None:
    rng = np.random.default_rng(0)
    r = rng.standard_normal
    away = r((4, 6))
    away += np.sign(away) * 0.1  # relu: away from the kink
    ops_table = [
        ("dense (DENSE-2..4)", ops.dense_forward, ops.dense_backward,
         {"x": r((5, 4)), "W": r((4, 3)), "b": r(3)}, ["x", "W", "b"]),
        ("softplus (ACT-2)", ops.softplus_forward, ops.softplus_backward, {"a": 3 * r((4, 6))},
         ["a"]),
        ("sigmoid (ACT-4)", ops.sigmoid_forward, ops.sigmoid_backward, {"a": 3 * r((4, 6))},
         ["a"]),
        ("tanh (ACT-5)", ops.tanh_forward, ops.tanh_backward, {"a": 2 * r((4, 6))}, ["a"]),
        ("relu (ACT-6)", ops.relu_forward, ops.relu_backward, {"a": away}, ["a"]),
        ("Bernoulli NLL (BER-3)", ops.bce_with_logits_forward, ops.bce_with_logits_backward,
         {"a": 4 * r((3, 10)), "x": rng.random((3, 10))}, ["a"]),
        ("Gaussian NLL (GAU-2,3)", ops.gaussian_nll_forward, ops.gaussian_nll_backward,
         {"x": r((3, 5)), "m": r((3, 5)), "s": r((3, 5))}, ["m", "s"]),
        ("reparameterisation (REP-2,3)", ops.reparameterize_forward,
         ops.reparameterize_backward, {"mu": r((4, 3)), "lv": r((4, 3)), "eps": r((4, 3))},
         ["mu", "lv"]),
        ("KL (KL-2,3)", ops.kl_standard_normal_forward, ops.kl_standard_normal_backward,
         {"mu": r((4, 3)), "lv": r((4, 3))}, ["mu", "lv"]),
    ]
    print(f"{'component':<44} max relative error")
    for name, fwd, bwd, inputs, names in ops_table:
        print(f"{name:<44} {op_error(fwd, bwd, inputs, names, rng):.1e}")
    for backend in ("numpy", "numba"):
        for decoder in ("bernoulli", "gaussian"):
            for act in ("softplus", "relu", "tanh"):
                vae = VAE(n_input=12, hidden=(7, 5), n_latent=3, activation=act,
                          decoder=decoder, dtype="float64", seed=3, backend=backend)
                randomize_biases(vae, rng)  # every bias gradient exercised
                X = rng.random((4, 12))
                if decoder == "bernoulli":
                    X = (X < 0.5).astype(float)
                report = check_model(vae, X, rng.standard_normal((4, 3)))
                label = f"whole -ELBO, {decoder}, {act}, {backend} ({len(report.rows)} tensors)"
                print(f"{label:<44} {report.max_rel_error:.1e}")


if __name__ == "__main__":
    main()
