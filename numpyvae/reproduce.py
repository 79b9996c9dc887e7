"""The seed's whole post in one command: its 20-D model, its 2-D model, and its three figures.

    numpyvae reproduce                    # runs/seed-post/{mnist-z20,mnist-z2,figures}
    numpyvae reproduce --resume           # continue where an interrupted run stopped

Metzen's post trains the 784-500-500-20 model for its reconstructions, then a second,
784-500-500-2 model for the latent scatter coloured by digit and the 20×20 manifold (a 20-D
scatter can only be a projection). Each is an ordinary ``numpyvae train`` run with every figure
and file of one (``numpyvae evaluate`` and ``numpyvae plot`` work on each); the post's three
figures are gathered into ``figures/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .config import TrainConfig, VAEConfig
from .runs import CHECKPOINT
from .training import Trainer

MODELS = (("mnist-z20", 20), ("mnist-z2", 2))  # run name, latent units
POST_FIGURES = (("mnist-z20", "reconstruction"), ("mnist-z2", "latent_scatter"),
                ("mnist-z2", "manifold"))


def reproduce(out=Path("runs/seed-post"), epochs: int = 75, seed: int = 0, resume: bool = False,
              train_size: int | None = None, test_size: int | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Train (or resume, or skip when finished) both models; returns name -> results."""
    out = Path(out)
    results = {}
    for name, latent in MODELS:
        run = out / name
        done = (run / "results.json").exists() and (run / CHECKPOINT).exists()
        if resume and done:
            log(f"{name}: finished earlier, kept ({run})")
            continue
        log(f"{name}: 784-500-500-{latent}, {epochs} epochs -> {run}")
        trainer = Trainer(
            None if resume and (run / CHECKPOINT).exists() else VAEConfig(n_latent=latent,
                                                                          seed=seed),
            TrainConfig(epochs=epochs, seed=seed, train_size=train_size, test_size=test_size,
                        progress=progress),
            run, resume=resume and (run / CHECKPOINT).exists(), log=log)
        results[name] = trainer.run()
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for name, fig in POST_FIGURES:
        shutil.copyfile(out / name / "figures" / f"{fig}.png", figures / f"{name}-{fig}.png")
    log(f"the post's figures: {figures}")
    return results


def add_arguments(p) -> None:
    from .argtypes import non_negative, positive

    p.add_argument("--out", type=Path, default=Path("runs/seed-post"))
    p.add_argument("--epochs", type=positive(int), default=75)
    p.add_argument("--seed", type=non_negative(int), default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (finished models are kept)")
    p.add_argument("--train-size", type=positive(int), default=None)
    p.add_argument("--test-size", type=positive(int), default=None)
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    reproduce(args.out, args.epochs, args.seed, args.resume, args.train_size, args.test_size,
              progress=not args.no_progress)
    return 0
