"""``numpyvae exercises start DIR``: write the student's files, never over their work."""

from __future__ import annotations

import shutil
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"

README = """\
numpyvae exercises: write the maths of a Variational Autoencoder yourself
=========================================================================

Files
  vae_ops.py       every forward/backward pair: dense layer, activations, the two losses,
                   the variance floor and the shared variance, the reparameterisation, the
                   KL term, the k-sample (IWAE) terms, the initialisers
  vae_optim.py     SGD.step and Adam.step
  vae_network.py   backward(cache, grads, ops): the whole backward pass of the VAE
  notebooks/       the lessons with their exercises; each check cell grades your cell

What to do
  Each stub raises NotImplementedError("(LABEL): hint"). Replace the raise with your code;
  keep the lines after it (they name what to define). The label, e.g. (KL-3), is an
  equation in numpyvae's derivations/ (kl.md, "Gradients"); the docstring gives the shapes.
  Suggested order: the notebooks 01 to 04, then the rest of vae_ops.py, then vae_optim.py.

Check your work (from this folder)
  numpyvae exercises check                  every equation, one row each
  numpyvae exercises check --only KL-3      one equation

  not started   the stub still raises NotImplementedError
  error         your code raised an exception, or the file does not import
  wrong         differs from the reference by more than 1e-6 (relative); the diagnosis
                names the mistake if it is a classic one, and the section to reread
  approximate   within 1e-6: right maths, a different rounding or a weaker numerical form
  exact         the reference's result to 1e-12 in float64

When every piece the model needs passes, the checker assembles a VAE from your functions,
trains it for a few seconds on MNIST and shows its loss next to the reference's. That VAE
(Bernoulli decoder, one sample, the ELBO) does not need the floor, the shared variance or the
k-sample terms (GAU-4..6, IWAE-2, IWAE-4..6): they are graded, not trained.
"""


def student_files() -> dict[str, Path]:
    """Relative path in the workspace -> template it is copied from."""
    files = {p.name: p for p in sorted(TEMPLATES.glob("*.py"))}
    notebooks = sorted((TEMPLATES / "notebooks").glob("*.ipynb"))
    files.update({f"notebooks/{p.name}": p for p in notebooks})
    return files


def start(folder: Path | str, force: bool = False) -> tuple[list[str], list[str]]:
    """Write the workspace into ``folder``: (written, refused because they exist)."""
    folder = Path(folder).expanduser()
    wanted = {**student_files(), "README.txt": None}
    existing = [rel for rel in wanted if (folder / rel).exists()]
    if existing and not force:
        return [], existing
    for rel, template in wanted.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if template is None:
            target.write_text(README, encoding="utf-8")
        else:
            shutil.copyfile(template, target)
    return list(wanted), []
