"""Data sets (MNIST, Fashion-MNIST, Frey faces); binarisation and batches are in ``batches``.

Images stay uint8, shape (N, D), in memory (MNIST: 47 MB instead of 188 MB as float32); they
become floats one batch at a time, inside ``iterate_batches``. Every file is checksummed before
use. All randomness comes from a ``numpy.random.Generator`` passed in, never global state.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# binarisation and batching live in numpyvae.batches; re-exported here for one import
from numpyvae.batches import (
    BINARIZATIONS,
    NONE_BINARIZATION_WARNING,
    binarize_static,
    dequantize_static,
    iterate_batches,
    to_float,
)
from numpyvae.config import DATASETS
from numpyvae.errors import DataFileError, DataNotFoundError
from numpyvae.idx import fetch, read_idx, verify_sha256

_PACKAGE_DATA = Path(__file__).resolve().parent / "datasets"
SPLITS = ("train", "test")

# --- MNIST: bundled, the four canonical files as published ---------------------------------------
MNIST_DIR = _PACKAGE_DATA / "mnist"
MNIST_FILES = {  # split -> ((file, SHA-256 of the .gz, shape), (labels...))
    "train": (("train-images-idx3-ubyte.gz",
               "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", (60000, 28, 28)),
              ("train-labels-idx1-ubyte.gz",
               "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", (60000,))),
    "test": (("t10k-images-idx3-ubyte.gz",
              "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", (10000, 28, 28)),
             ("t10k-labels-idx1-ubyte.gz",
              "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", (10000,))),
}


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST digits, checksum-verified.

    Returns:
        images: uint8 (N, 784), grey values 0..255, N = 60000 (train) or 10000 (test).
        labels: uint8 (N,), digits 0..9, in the canonical order.
    """
    _check_split(split)
    fix = ("the bundled copy is damaged; reinstall numpyvae (pip install --force-reinstall) "
           "or restore numpyvae/datasets/mnist/ from git.")
    arrays = []
    for name, sha256, shape in MNIST_FILES[split]:
        path = MNIST_DIR / name
        verify_sha256(path, sha256, fix)
        arrays.append(_read_checked_shape(path, shape))
    images, labels = arrays
    return images.reshape(len(images), -1), labels


def _read_checked_shape(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    array = read_idx(path)
    if array.shape != shape:
        raise DataFileError(f"{path}: holds an array of shape {array.shape}; expected {shape}. "
                            "Fix: it is the wrong file; obtain the right one.")
    return array


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# --- Fashion-MNIST: found on this machine, or downloaded on request -------------------------------
FASHION_MNIST_ENV = "NUMPYVAE_FASHION_MNIST"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt: dataset-fashion-mnist
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEFAULT_FASHION_MNIST_CACHE = Path("~/.cache/numpyvae/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class RemoteIdx:
    """One published IDX file and the two checksums that pin it down.

    ``gz_sha256`` is of the .gz exactly as served (checked on download). ``payload_sha256`` is of
    the decompressed pixels or labels after the header, which survives re-compression: Debian's
    copies carry a different gzip header than Zalando's, so only this one fits every source.
    """

    name: str
    shape: tuple[int, ...]
    gz_sha256: str
    payload_sha256: str


FASHION_MNIST_FILES = {
    "train": (
        RemoteIdx("train-images-idx3-ubyte.gz", (60000, 28, 28),
                  "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                  "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012"),
        RemoteIdx("train-labels-idx1-ubyte.gz", (60000,),
                  "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                  "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7")),
    "test": (
        RemoteIdx("t10k-images-idx3-ubyte.gz", (10000, 28, 28),
                  "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                  "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a"),
        RemoteIdx("t10k-labels-idx1-ubyte.gz", (10000,),
                  "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                  "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9")),
}


def load_fashion_mnist(split: str = "train", path: str | os.PathLike[str] | None = None,
                       download: bool = False, cache_dir: str | os.PathLike[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Zalando's Fashion-MNIST, checksum-verified; same layout as ``load_mnist``.

    Looks for the split's two files (``.gz`` or already gunzipped) in the first directory that
    has both, in this order: ``path``, $NUMPYVAE_FASHION_MNIST, Debian's install location
    /usr/share/datasets/fashion-mnist, then ``cache_dir`` (~/.cache/numpyvae/fashion-mnist).
    With ``download=True`` and no copy found, fetches the four files into ``cache_dir`` first.

    Returns:
        images: uint8 (N, 784); labels: uint8 (N,) indexing ``FASHION_MNIST_CLASSES``.
    """
    _check_split(split)
    cache = Path(cache_dir or DEFAULT_FASHION_MNIST_CACHE).expanduser()
    specs = FASHION_MNIST_FILES[split]
    candidates = [Path(p).expanduser() for p in (path, os.environ.get(FASHION_MNIST_ENV)) if p]
    candidates += [FASHION_MNIST_DEBIAN_DIR, cache]
    found = _find_files(candidates, specs)
    if found is None and download:
        download_fashion_mnist(cache)
        found = _find_files([cache], specs)
    if found is None:
        raise DataNotFoundError(_fashion_not_found(split, candidates, cache))
    images, labels = (_read_fashion_file(f, spec) for f, spec in zip(found, specs, strict=True))
    return images.reshape(len(images), -1), labels


def download_fashion_mnist(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Fetch the four Fashion-MNIST files (30 MB) that are not yet in ``cache_dir``; return it.

    Each file is checked against its published SHA-256 before it is renamed into place.
    """
    cache = Path(cache_dir or DEFAULT_FASHION_MNIST_CACHE).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    for spec in (*FASHION_MNIST_FILES["train"], *FASHION_MNIST_FILES["test"]):
        if (cache / spec.name).exists():
            continue
        try:
            fetch(FASHION_MNIST_URL + spec.name, cache / spec.name, spec.gz_sha256)
        except OSError as err:  # no network, refused, timed out, disk full
            raise DataNotFoundError(
                f"could not download {FASHION_MNIST_URL + spec.name} into {cache}: {err}. "
                "Fix: check the network, or install it with "
                "`sudo apt-get install dataset-fashion-mnist`, or copy the four files into a "
                f"directory and pass path=DIR or set {FASHION_MNIST_ENV}=DIR."
            ) from err
    return cache


def _find_files(dirs: list[Path], specs: tuple[RemoteIdx, ...]) -> list[Path] | None:
    """The files for ``specs`` from the first directory that holds all of them, else None."""
    for d in dirs:
        files = [_gz_or_gunzipped(d / s.name) for s in specs]
        if all(f is not None for f in files):
            return files
    return None


def _gz_or_gunzipped(gz: Path) -> Path | None:
    """``gz`` if it exists, else the same file already gunzipped (no .gz suffix), else None."""
    for f in (gz, gz.with_suffix("")):
        if f.is_file():
            return f
    return None


def _read_fashion_file(path: Path, spec: RemoteIdx) -> np.ndarray:
    array = _read_checked_shape(path, spec.shape)
    actual = hashlib.sha256(array).hexdigest()  # the payload, whatever the compression
    if actual != spec.payload_sha256:
        raise DataFileError(
            f"{path}: decompressed content has SHA-256 {actual}, expected "
            f"{spec.payload_sha256} (the published Fashion-MNIST {spec.name}). Fix: delete it "
            "and fetch it again with download=True, or reinstall it with "
            "`sudo apt-get install --reinstall dataset-fashion-mnist`."
        )
    return array


def _fashion_not_found(split: str, searched: list[Path], cache: Path) -> str:
    names = " and ".join(s.name for s in FASHION_MNIST_FILES[split])
    places = "\n".join(f"  - {d}" for d in searched)
    return (
        f"Fashion-MNIST {split} files ({names}, gzipped or not) not found. Looked in:\n{places}\n"
        "Get them in one of these ways:\n"
        "  - Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
        f"  - download (30 MB from Zalando into {cache}): load_fashion_mnist(..., download=True),"
        " or --download on the command line\n"
        f"  - use a copy you have: load_fashion_mnist(..., path=DIR) or "
        f"export {FASHION_MNIST_ENV}=DIR"
    )


# --- Frey faces: bundled, converted from frey_rawface.mat by scripts/convert_frey.py -------------
FREY_FILE = _PACKAGE_DATA / "frey" / "frey_faces.npy"
FREY_SHA256 = "13a0cd943fe56c8a2f4c05bc670b097ae2fda4f9d3a0d5215277712ac02f12e6"
FREY_SHAPE = (1965, 560)  # 1965 video frames of 28 rows x 20 columns
FREY_SPLIT_SEED = 0
FREY_TEST_FRACTION = 0.1
FREY_BLOCKS, FREY_BLOCK, FREY_GAP = 10, 20, 5  # 10 held-out runs of 20 frames, 5 dropped aside


def load_frey() -> np.ndarray:
    """Brendan Frey's faces, checksum-verified: uint8 (1965, 560), each row a 28 x 20 image."""
    verify_sha256(FREY_FILE, FREY_SHA256,
                  "the bundled copy is damaged; reinstall numpyvae or regenerate it with "
                  "scripts/convert_frey.py.")
    faces = np.load(FREY_FILE, allow_pickle=False)
    if faces.dtype != np.uint8 or faces.shape != FREY_SHAPE:
        raise DataFileError(f"{FREY_FILE}: holds {faces.dtype} {faces.shape}; expected uint8 "
                            f"{FREY_SHAPE}. Fix: regenerate it with scripts/convert_frey.py.")
    return faces


def holdout_split(images: np.ndarray, test_fraction: float = FREY_TEST_FRACTION,
                  seed: int = FREY_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split rows (N, D) into (train, test) for a data set without an official test split.

    Permutes the row indices with ``default_rng(seed)`` and holds out the last
    ``ceil(test_fraction * N)`` of them; each part keeps the original row order. For Frey
    (seed 0, 10%) that is 1768 train and 197 test images. The faces are video frames, so a test
    face usually has near-identical neighbours in the training set: test ELBOs are optimistic.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    n = len(images)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(np.ceil(test_fraction * n))
    return images[np.sort(order[:-n_test])], images[np.sort(order[-n_test:])]


def block_holdout_split(images: np.ndarray, n_blocks: int = FREY_BLOCKS,
                        block: int = FREY_BLOCK, gap: int = FREY_GAP
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Split the frames of a video (N, D) into (train, test) without near-duplicates across.

    The test set is ``n_blocks`` runs of ``block`` consecutive frames, spread evenly over the
    video (block i centred on frame (i + 1/2) N / n_blocks); ``gap`` frames on each side of each
    run are dropped from both parts, so no training frame is within ``gap`` frames of a test
    frame. Rows keep their order. For Frey (10 x 20, gap 5): 200 test, 100 dropped, 1665 train.
    """
    n = len(images)
    if n_blocks < 1 or block < 1 or gap < 0 or n_blocks * (block + 2 * gap) > n:
        raise ValueError(f"{n_blocks} blocks of {block} frames with gaps of {gap} do not fit "
                         f"in {n} frames; use fewer or smaller blocks")
    role = np.zeros(n, np.int8)  # 0 train, 1 test, 2 dropped
    for i in range(n_blocks):
        start = int(round((i + 0.5) * n / n_blocks - block / 2))
        role[max(start - gap, 0) : start + block + gap] = 2
        role[start : start + block] = 1
    return images[role == 0], images[role == 1]


# --- one interface for all three -----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set ready for training: uint8 images (N, D) with D = prod(image_shape)."""

    name: str
    train_images: np.ndarray  # uint8 (N_train, D)
    train_labels: np.ndarray | None  # uint8 (N_train,), or None when unlabelled (Frey)
    test_images: np.ndarray  # uint8 (N_test, D)
    test_labels: np.ndarray | None
    image_shape: tuple[int, int]  # (rows, columns): (28, 28), or (28, 20) for Frey
    class_names: tuple[str, ...] | None
    default_decoder: str  # "bernoulli" for binarised digits and clothes, "gaussian" for faces

    @property
    def dim(self) -> int:
        """D, the number of pixels per image."""
        return self.image_shape[0] * self.image_shape[1]


def load_dataset(name: str, split: str = "blocks", **kwargs: object) -> Dataset:
    """Load "mnist", "fashion-mnist" (kwargs of ``load_fashion_mnist``) or "frey" as a
    ``Dataset``. Frey's ``split``: "blocks" (``block_holdout_split``, the default) or "random"
    (``holdout_split``, the seeded 10 % of frames of version 0.2 and before); kwargs go to it."""
    if name == "mnist":
        return Dataset(name, *load_mnist("train"), *load_mnist("test"), (28, 28),
                       tuple(str(d) for d in range(10)), "bernoulli")
    if name == "fashion-mnist":
        train = load_fashion_mnist("train", **kwargs)
        test = load_fashion_mnist("test", **kwargs)
        return Dataset(name, *train, *test, (28, 28), FASHION_MNIST_CLASSES, "bernoulli")
    if name == "frey":
        splitter = {"blocks": block_holdout_split, "random": holdout_split}.get(split)
        if splitter is None:
            raise ValueError(f"unknown Frey split {split!r}; choose 'blocks' or 'random'")
        train, test = splitter(load_frey(), **kwargs)
        return Dataset(name, train, None, test, None, (28, 20), None, "gaussian")
    raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")


__all__ = [
    "BINARIZATIONS", "DATASETS", "FASHION_MNIST_CLASSES", "NONE_BINARIZATION_WARNING", "SPLITS",
    "Dataset", "binarize_static", "block_holdout_split", "dequantize_static",
    "download_fashion_mnist", "holdout_split", "iterate_batches",
    "load_dataset", "load_fashion_mnist", "load_frey", "load_mnist", "to_float",
]
