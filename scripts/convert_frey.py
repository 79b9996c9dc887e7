"""Convert Brendan Frey's face images from MATLAB to the NumPy file numpyvae ships.

Input:  frey_rawface.mat, a MATLAB v5 file holding one variable ``ff``: uint8, 560 x 1965, one
        image per *column*; each column is a 28 x 20 image (28 rows, 20 columns) stored
        row-major, so ``ff.T.reshape(-1, 28, 20)`` shows upright faces.
Output: numpyvae/datasets/frey/frey_faces.npy, uint8, shape (1965, 560): one flattened
        28 x 20 image per row, C order. The package reads it with NumPy alone.

Needs SciPy (only here, not in the package). Usage:

    python3 scripts/convert_frey.py [path/to/frey_rawface.mat] [--preview grid.png]

(--preview needs matplotlib in the same interpreter.)

It prints the SHA-256 of the output; that value is ``FREY_SHA256`` in numpyvae/data.py, so if
you regenerate the file with a different result, update the constant too.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "frey" / "frey_rawface.mat"
OUTPUT = ROOT / "numpyvae" / "datasets" / "frey" / "frey_faces.npy"
N_IMAGES, HEIGHT, WIDTH = 1965, 28, 20


def convert(mat_path: Path) -> np.ndarray:
    """Return the faces as uint8 (1965, 560), each row a row-major 28 x 20 image."""
    from scipy.io import loadmat  # imported here so --help works without SciPy

    ff = loadmat(mat_path)["ff"]
    if ff.shape != (HEIGHT * WIDTH, N_IMAGES) or ff.dtype != np.uint8:
        raise SystemExit(
            f"{mat_path}: variable ff is {ff.dtype} {ff.shape}; expected uint8 "
            f"({HEIGHT * WIDTH}, {N_IMAGES}). Is this frey_rawface.mat?"
        )
    return np.ascontiguousarray(ff.T)  # column j of ff becomes row j


def save_preview(faces: np.ndarray, png: Path, n: int = 40) -> None:
    """Save a grid of every (N // n)-th face so a person can check they are upright."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = faces[:: len(faces) // n][:n].reshape(-1, HEIGHT, WIDTH)
    fig, axes = plt.subplots(4, n // 4, figsize=(n // 4, 4 * HEIGHT / WIDTH))
    for ax, img in zip(axes.flat, picks, strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.axis("off")
    fig.savefig(png, dpi=100, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mat", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--preview", type=Path, help="also save a PNG grid of faces here")
    args = parser.parse_args()
    faces = convert(args.mat)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.save(OUTPUT, faces, allow_pickle=False)
    digest = hashlib.sha256(OUTPUT.read_bytes()).hexdigest()
    print(f"wrote {OUTPUT}: {faces.dtype} {faces.shape}\nSHA-256 {digest}")
    if args.preview:
        save_preview(faces, args.preview)
        print(f"preview: {args.preview}")


if __name__ == "__main__":
    main()
