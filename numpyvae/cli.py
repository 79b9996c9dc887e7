"""The ``numpyvae`` command: train, evaluate, plot, gradcheck.

A user mistake (bad flag value, missing run directory, unreadable file) prints one line and
exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .argtypes import non_negative, positive, variance_floor
from .errors import DivergenceError


def _model_flags(p: argparse.ArgumentParser, hidden=(500, 500), latent=20) -> None:
    from .config import ACTIVATIONS, BACKENDS, DECODER_VARIANCES, DECODERS, DTYPES, INITS

    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=positive(int), nargs="*", default=list(hidden),
                   metavar="H", help="hidden widths per side (default: %(default)s)")
    g.add_argument("--latent", type=positive(int), default=latent, help="latent units J")
    g.add_argument("--activation", choices=ACTIVATIONS, default="softplus")
    g.add_argument("--decoder", choices=DECODERS, default=None,
                   help="default: the data set's (bernoulli for digits, gaussian for faces)")
    g.add_argument("--dtype", choices=DTYPES, default="float32")
    g.add_argument("--init", choices=INITS, default="xavier",
                   help="weight initialisation (biases are zero)")
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="default: numba, or $NUMPYVAE_BACKEND")
    g.add_argument("--var-floor", type=variance_floor, default="auto", metavar="VAR",
                   help="Gaussian decoder: sigma^2 = VAR + exp(a); 'auto' (default): "
                   "1/(12*256^2), the variance of one grey level's dequantisation noise; "
                   "'none': no floor (logvar = a, as before 0.3)")
    g.add_argument("--decoder-variance", choices=DECODER_VARIANCES, default="conditional",
                   help="Gaussian decoder: log-variance from z (conditional, default) or one "
                   "learned value per pixel for every z (shared)")


def build_parser() -> argparse.ArgumentParser:
    from .config import (
        BINARIZATIONS,
        DATASETS,
        FREY_SPLITS,
        OBJECTIVES,
        OPTIMIZERS,
        OUTPUT_BIASES,
        SCHEDULES,
    )

    parser = argparse.ArgumentParser(prog="numpyvae", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a VAE and write history, checkpoints and figures")
    t.add_argument("--dataset", choices=DATASETS, default="mnist")
    _model_flags(t)
    g = t.add_argument_group("training")
    g.add_argument("--epochs", type=positive(int), default=None,
                   help="passes over the training set (default 75, or 3280 with --schedule "
                        "burda); on --resume, a new total")
    g.add_argument("--batch-size", type=positive(int), default=100)
    g.add_argument("--lr", type=positive(float), default=1e-3,
                   help="learning rate (the first phase's, with --schedule burda)")
    g.add_argument("--adam-eps", type=positive(float), default=1e-8,
                   help="Adam's epsilon (Burda et al. use 1e-4)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    g.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="elbo (default): the ELBO, averaged over --k samples; iwae: the "
                        "importance-weighted bound L_k of Burda et al.")
    g.add_argument("--k", type=positive(int), default=None,
                   help="samples of z per image and step (default 1)")
    g.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="learning rate per pass: constant, or burda (8 phases, 3280 passes, "
                        "1e-3 * 10^(-(i-1)/7); --epochs then defaults to 3280)")
    g.add_argument("--output-bias", choices=OUTPUT_BIASES, default="zero",
                   help="data-mean: start the decoder's output bias at the training mean "
                        "(Burda et al.)")
    g.add_argument("--binarize", choices=BINARIZATIONS, default=None,
                   help="default: dynamic (Bernoulli decoder) or none (Gaussian)")
    g.add_argument("--dequantize", action=argparse.BooleanOptionalAction, default=None,
                   help="Gaussian decoder: train on x = (pixel + u)/256, u ~ U(0, 1) fresh per "
                   "batch, and report -log P of the discrete pixels (default: on for a "
                   "Gaussian decoder; --no-dequantize: grey values / 255, a density only)")
    g.add_argument("--split", choices=FREY_SPLITS, default="blocks",
                   help="Frey's held-out frames: blocks (10 runs of 20 frames, 5 dropped on "
                   "each side; default) or random (a seeded 10%%, near-duplicates across)")
    g.add_argument("--beta", type=non_negative(float), default=1.0, help="KL weight")
    g.add_argument("--warmup", type=non_negative(float), default=0.0, metavar="EPOCHS",
                   help="ramp beta linearly from 0 over this many epochs")
    g.add_argument("--seed", type=non_negative(int), default=0)
    g.add_argument("--eval-samples", type=positive(int), default=1,
                   help="z-draws per test image for the test -ELBO")
    g.add_argument("--iw-samples", type=non_negative(int), default=0, metavar="K",
                   help="importance-weighted bound with K samples at the end (0: skip)")
    g.add_argument("--train-size", type=positive(int), default=None)
    g.add_argument("--test-size", type=positive(int), default=None)
    g.add_argument("--out", type=Path, default=None, help="run directory (default runs/NAME)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--no-figures", action="store_true")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--download", action="store_true",
                   help="fetch Fashion-MNIST (30 MB) into ~/.cache/numpyvae if it is not here")

    e = sub.add_parser("evaluate", help="test -ELBO and importance-weighted log-likelihood")
    e.add_argument("run", type=Path, help="run directory or checkpoint .npz")
    e.add_argument("--k", type=non_negative(int), default=5000,
                   help="importance samples per test image (Burda et al. use 5000)")
    e.add_argument("--samples", type=positive(int), default=1, help="z-draws for the ELBO")
    e.add_argument("--test-size", type=positive(int), default=None)
    e.add_argument("--seed", type=non_negative(int), default=0)

    p = sub.add_parser("plot", help="(re)draw every figure of a run into RUN/figures")
    p.add_argument("run", type=Path)

    c = sub.add_parser("gradcheck", help="finite-difference check of every gradient (float64)")
    _model_flags(c, hidden=(7, 5), latent=3)
    c.add_argument("--input", type=positive(int), default=12, help="pixels D")
    c.add_argument("--batch", type=positive(int), default=4)
    c.add_argument("--max-entries", type=positive(int), default=None,
                   help="check at most this many entries per parameter")
    c.add_argument("--seed", type=non_negative(int), default=0)
    c.add_argument("--objective", choices=OBJECTIVES, default="elbo")
    c.add_argument("--k", type=positive(int), default=1, help="samples of z per example")

    from .demo import add_arguments as add_demo_arguments
    from .exercises.cli import add_arguments as add_exercises_arguments
    from .reproduce import add_arguments as add_reproduce_arguments

    add_exercises_arguments(sub.add_parser(
        "exercises", help="the course you do: a workspace of stubs and a checker"))

    add_reproduce_arguments(sub.add_parser(
        "reproduce", help="the seed post: its 20-D and 2-D MNIST models and their figures"))

    add_demo_arguments(sub.add_parser(
        "demo", help="lecture demo: a 2-D VAE whose latent space updates live"))
    return parser


def _gaussian_options(args) -> dict:
    """The decoder's variance options as VAEConfig fields ("auto" floor: the config decides)."""
    return {"decoder_var_floor": args.var_floor, "decoder_variance": args.decoder_variance}


def _cmd_train(args) -> int:
    from .config import TrainConfig, VAEConfig
    from .runs import load_training_data
    from .schedules import default_epochs
    from .training import default_run_dir, train

    tcfg = TrainConfig(
        dataset=args.dataset, epochs=args.epochs or default_epochs(args.schedule),
        batch_size=args.batch_size, schedule=args.schedule, output_bias=args.output_bias,
        binarize=args.binarize, beta=args.beta, warmup_epochs=args.warmup, seed=args.seed,
        eval_samples=args.eval_samples, iw_samples=args.iw_samples, train_size=args.train_size,
        test_size=args.test_size, figures=not args.no_figures, progress=not args.no_progress,
        download=args.download, dequantize=args.dequantize, split=args.split)
    mcfg = None
    if not args.resume:
        ds = load_training_data(tcfg)
        mcfg = VAEConfig(
            n_input=ds.dim, hidden=tuple(args.hidden), n_latent=args.latent,
            activation=args.activation, decoder=args.decoder or ds.default_decoder,
            dtype=args.dtype, seed=args.seed, learning_rate=args.lr, optimizer=args.optimizer,
            init=args.init, adam_eps=args.adam_eps, objective=args.objective or "elbo",
            k=args.k or 1, **_gaussian_options(args),
            **({"backend": args.backend} if args.backend else {}))
    elif args.out is None:
        raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
    out = args.out or default_run_dir(mcfg, tcfg)
    print(f"run directory: {out}")
    expect = {key: v for key, v in (("objective", args.objective), ("k", args.k))
              if v is not None}
    _, results = train(mcfg, tcfg, out, resume=args.resume, expect=expect,
                       keep_epochs=args.epochs is None)
    print(json.dumps(results, indent=1))
    print(f"figures: {Path(out) / 'figures'}")
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluate import evaluate
    from .runs import open_run
    from .training import write_text_atomic

    run = open_run(args.run)
    data = run.data(test_size=args.test_size)
    tcfg, test_x, mode = run.train_config, data.test_x, data.mode
    res = evaluate(run.vae, test_x, k=args.k, n_samples=args.samples,
                   rng=np.random.default_rng(args.seed), progress=True,
                   dequantized=data.dequantize)
    res.update(dataset=tcfg.dataset, binarization=mode, dequantized=data.dequantize,
               checkpoint=str(run.path))
    how = ("dequantized (pixel + u)/256, one fixed seeded u" if data.dequantize
           else f"binarization {mode}")
    print(f"{tcfg.dataset} test set, {len(test_x)} images, {how}, nats/example")
    print(f"  -ELBO ({args.samples} z-sample{'s' * (args.samples > 1)}): {res['neg_elbo']:.3f}"
          f"   (recon {res['recon']:.3f}, KL {res['kl']:.3f})")
    if args.k:
        print(f"  -log p(x), importance-weighted, k={args.k}: {res['neg_log_likelihood_iw']:.3f}")
    if data.dequantize:
        print("  discrete pixels, -log P(pixels) <= (a bound: + D log 256 to the density's):")
        print(f"    -ELBO: {res['discrete_neg_elbo']:.2f} nats, "
              f"{res['discrete_neg_elbo_bits_per_dim']:.4f} bits/dim")
        if args.k:
            print(f"    -L_{args.k}: {res['discrete_neg_log_likelihood_iw']:.2f} nats, "
                  f"{res['discrete_neg_log_likelihood_iw_bits_per_dim']:.4f} bits/dim")
    elif run.vae.config.decoder == "gaussian":
        print("  (a density of grey values, not a probability: not comparable with discrete "
              "likelihoods; train with --dequantize for one)")
    if args.run.is_dir():
        write_text_atomic(args.run / "evaluation.json", json.dumps(res, indent=1))
    return 0


def _cmd_plot(args) -> int:
    from .runs import open_run

    run = open_run(args.run)
    run.figures()
    print(f"figures written to {run.directory / 'figures'}")
    return 0


def _cmd_gradcheck(args) -> int:
    from .gradcheck import check_model, randomize_biases
    from .model import VAE

    vae = VAE(n_input=args.input, hidden=tuple(args.hidden), n_latent=args.latent,
              activation=args.activation, decoder=args.decoder or "bernoulli", dtype="float64",
              seed=args.seed, objective=args.objective, k=args.k, **_gaussian_options(args),
              **({"backend": args.backend} if args.backend else {}))
    rng = np.random.default_rng(args.seed)
    randomize_biases(vae, rng)  # non-zero biases so every bias gradient is exercised
    X = rng.random((args.batch, args.input))
    if vae.config.decoder == "bernoulli":
        X = (X < 0.5).astype(np.float64)
    shape = (args.batch, args.latent)
    one = (args.objective, args.k) == ("elbo", 1)
    eps = rng.standard_normal(shape if one else (args.k, *shape))
    report = check_model(vae, X, eps, max_entries=args.max_entries, rng=rng)
    print(f"{vae!r}, batch {args.batch}, backend {vae.config.backend}")
    print(report.table())
    print(f"max relative error {report.max_rel_error:.2e}: "
          f"{'all gradients pass' if report.passed else 'SOME GRADIENTS FAIL'}")
    return 0 if report.passed else 1


def _cmd_demo(args) -> int:
    from .demo import main as demo_main

    return demo_main(args)


def _cmd_exercises(args) -> int:
    from .exercises.cli import main as exercises_main

    return exercises_main(args)


def _cmd_reproduce(args) -> int:
    from .reproduce import main as reproduce_main

    return reproduce_main(args)


COMMANDS = {"reproduce": _cmd_reproduce, "train": _cmd_train, "evaluate": _cmd_evaluate,
            "plot": _cmd_plot, "gradcheck": _cmd_gradcheck, "demo": _cmd_demo,
            "exercises": _cmd_exercises}


def main(argv: list[str] | None = None) -> int:
    from .training import TrainingInterrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as e:
        print(f"numpyvae: {e}", file=sys.stderr)
        again = (f"numpyvae reproduce --resume --out {args.out}" if args.command == "reproduce"
                 else f"numpyvae train --resume --out {e.checkpoint.parent}")
        print(f"numpyvae: resume with: {again}", file=sys.stderr)
        return 128 + e.signum
    except DivergenceError as e:
        if args.debug:
            raise
        print(f"numpyvae: training diverged: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"numpyvae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("numpyvae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
