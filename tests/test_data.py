"""The data layer: IDX parsing that survives hostile files, checksummed data sets, Fashion-MNIST's
search order and verified download, binarisation and reproducible, allocation-free batches."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import time
import tracemalloc
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpyvae import data, idx
from numpyvae.data import RemoteIdx, iterate_batches
from numpyvae.errors import DataFileError, DataNotFoundError
from numpyvae.idx import read_idx, write_idx

# --- IDX -------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Hand-built IDX bytes, independent of write_idx."""
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return bytes([0, 0, type_code, array.ndim]) + dims + array.tobytes()


def put(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("shape", [(7,), (3, 5), (4, 2, 3), (2, 3, 2, 2), (0, 28, 28)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, shape, suffix):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape and np.array_equal(back, array)
    assert back.flags.writeable


def test_read_idx_reads_hand_built_bytes_and_sniffs_gzip_whatever_the_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(put(tmp_path, "raw.gz", idx_bytes(array))), array)
    assert np.array_equal(read_idx(put(tmp_path, "z", gzip.compress(idx_bytes(array)))), array)


def test_write_idx_rejects_non_uint8_and_bad_ndim(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "f", np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="1 to 4"):
        write_idx(tmp_path / "f", np.zeros((1,) * 5, dtype=np.uint8))


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
BAD_FILES = {
    "empty": (b"", "ends after 0 of the 4 bytes"),
    "wrong magic": (b"\x01" + GOOD[1:], "magic number"),
    "float type code": (bytes([0, 0, 0x0D, 2]) + GOOD[4:], r"0x0d \(float32\).*0x08"),
    "ndim 0": (bytes([0, 0, 8, 0]) + GOOD[4:], "declares 0 dimensions"),
    "ndim 5": (bytes([0, 0, 8, 5]) + GOOD[4:], "declares 5 dimensions"),
    "short dims": (GOOD[:10], "bytes of the dimensions"),
    "truncated payload": (GOOD[:-1], "truncated.*holds only 11"),
    "trailing bytes": (GOOD + b"\x00", "trailing bytes"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, case, compress):
    content, pattern = BAD_FILES[case]
    path = put(tmp_path, "bad-idx", gzip.compress(content) if compress else content)
    with pytest.raises(DataFileError, match=pattern) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_lying_header_of_1e12_bytes_fails_fast_without_allocating(tmp_path):
    header = bytes([0, 0, 8, 2]) + (10**6).to_bytes(4, "big") * 2  # 10^6 x 10^6 = 10^12 bytes
    path = put(tmp_path, "liar-idx", header + b"\x00" * 100)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(DataFileError, match="1,000,000,000,000 bytes"):
        read_idx(path)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1 << 20
    with pytest.raises(DataFileError, match="limit of 64"):
        read_idx(put(tmp_path, "small", GOOD.replace(b"\x00\x00\x00\x03", b"\x00\x00\x01\x00")),
                 max_bytes=64)


def test_corrupt_gzip_streams_raise_data_file_error(tmp_path):
    payload = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    gz = gzip.compress(idx_bytes(payload))
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    for name, content in [("cut", gz[: len(gz) // 2]), ("flipped", bytes(flipped)),
                          ("garbage after", gz + b"not gzip"), ("header only", gz[:5])]:
        with pytest.raises(DataFileError, match="gzip stream is corrupt"):
            read_idx(put(tmp_path, f"{name}.gz", content))


def test_missing_file_is_an_os_error_not_a_data_file_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.gz")


SMALL = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gz=st.booleans(), cut=st.integers(0, 200),
       flips=st.lists(st.tuples(st.integers(0, 199), st.integers(1, 255)), max_size=3))
def test_fuzz_read_idx_returns_an_array_or_raises_data_file_error(tmp_path, gz, cut, flips):
    content = bytearray(gzip.compress(idx_bytes(SMALL)) if gz else idx_bytes(SMALL))
    for pos, xor in flips:
        content[pos % len(content)] ^= xor
    path = put(tmp_path, "fuzz", bytes(content[: len(content) - cut % len(content)]))
    try:
        array = read_idx(path)
    except DataFileError:
        return
    assert array.dtype == np.uint8 and array.size <= idx.DEFAULT_MAX_BYTES


# --- checksums and bundled data sets ---------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_train():
    return data.load_mnist("train")


def test_load_mnist_shapes_dtypes_and_canonical_order(mnist_train):
    images, labels = mnist_train
    assert images.shape == (60000, 784) and labels.shape == (60000,)
    assert images.dtype == labels.dtype == np.uint8
    assert labels[0] == 5 and set(np.unique(labels)) == set(range(10))
    test_images, test_labels = data.load_mnist("test")
    assert test_images.shape == (10000, 784) and test_labels[0] == 7 and test_labels.max() == 9
    with pytest.raises(ValueError, match="train"):
        data.load_mnist("validation")


def test_mnist_checksum_mismatch_names_the_file(tmp_path, monkeypatch):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data.MNIST_DIR / name, tmp_path / name)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(bad.read_bytes())
    content[100] ^= 1
    bad.write_bytes(bytes(content))
    monkeypatch.setattr(data, "MNIST_DIR", tmp_path)
    with pytest.raises(DataFileError, match="SHA-256 checksum mismatch") as err:
        data.load_mnist("test")
    assert str(bad) in str(err.value) and "reinstall" in str(err.value)


def test_file_sha256_is_the_hash_of_the_bytes_and_is_cached(tmp_path):
    path = put(tmp_path, "f", b"abc")
    assert idx.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    assert any(key[0] == str(path.resolve()) for key in idx._SHA256_CACHE)


def test_load_frey_shape_and_checksum():
    faces = data.load_frey()
    assert faces.shape == (1965, 560) and faces.dtype == np.uint8
    assert hashlib.sha256(data.FREY_FILE.read_bytes()).hexdigest() == data.FREY_SHA256
    assert 0 < faces.min() and faces.max() < 255 and 100 < faces.mean() < 160  # grey faces


def test_frey_corrupt_copy_is_rejected(tmp_path, monkeypatch):
    content = bytearray(data.FREY_FILE.read_bytes())
    content[-1] ^= 1
    monkeypatch.setattr(data, "FREY_FILE", put(tmp_path, "frey_faces.npy", bytes(content)))
    with pytest.raises(DataFileError, match="frey_faces.npy.*SHA-256"):
        data.load_frey()


def test_holdout_split_is_seeded_disjoint_and_complete():
    rows = np.arange(1965, dtype=np.int64)[:, None]
    train, test = data.holdout_split(rows)
    assert (len(train), len(test)) == (1768, 197)
    assert np.array_equal(np.sort(np.concatenate([train, test]).ravel()), rows.ravel())
    assert np.array_equal(data.holdout_split(rows)[1], test)
    assert not np.array_equal(data.holdout_split(rows, seed=1)[1], test)


def test_load_dataset_gives_the_uniform_interface(monkeypatch):
    frey = data.load_dataset("frey")
    assert (frey.image_shape, frey.dim, frey.default_decoder) == ((28, 20), 560, "gaussian")
    assert frey.train_labels is None and frey.test_labels is None and frey.class_names is None
    assert frey.train_images.shape == (1665, 560) and frey.test_images.shape == (200, 560)
    mnist = data.load_dataset("mnist")
    assert mnist.class_names == tuple("0123456789") and mnist.default_decoder == "bernoulli"
    assert mnist.train_images.shape == (60000, 784) and mnist.test_labels.shape == (10000,)
    assert data.DATASETS == ("mnist", "fashion-mnist", "frey")
    with pytest.raises(ValueError, match="'mnist', 'fashion-mnist', 'frey'"):
        data.load_dataset("cifar10")


# --- Fashion-MNIST: search order, not found, download ----------------------------------------

FAKE_SHAPES = {"train": ((5, 28, 28), (5,)), "test": ((3, 28, 28), (3,))}


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """Small fake Fashion-MNIST files (gz, as served) with the published specs replaced by theirs.

    Returns {file name: (array, gz bytes)}. No real copy on this machine can interfere.
    """
    rng = np.random.default_rng(3)
    files = {}
    for split, specs in data.FASHION_MNIST_FILES.items():
        fakes = []
        for spec, shape in zip(specs, FAKE_SHAPES[split], strict=True):
            array = rng.integers(0, 10 if len(shape) == 1 else 256, shape, dtype=np.uint8)
            gz = gzip.compress(idx_bytes(array), mtime=0)
            files[spec.name] = (array, gz)
            fakes.append(RemoteIdx(spec.name, shape, hashlib.sha256(gz).hexdigest(),
                                   hashlib.sha256(array.tobytes()).hexdigest()))
        monkeypatch.setitem(data.FASHION_MNIST_FILES, split, tuple(fakes))
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian-copy")
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    return files


def write_fakes(directory: Path, files: dict, gunzip: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (_, gz) in files.items():
        put(directory, name[:-3] if gunzip else name, gzip.decompress(gz) if gunzip else gz)
    return directory


@pytest.mark.parametrize("gunzip", [False, True])
def test_fashion_found_via_path(tmp_path, fake_fashion, gunzip):
    where = write_fakes(tmp_path / "mine", fake_fashion, gunzip)
    images, labels = data.load_fashion_mnist("test", path=where, cache_dir=tmp_path / "c")
    assert images.shape == (3, 784) and images.dtype == np.uint8
    assert np.array_equal(images, fake_fashion["t10k-images-idx3-ubyte.gz"][0].reshape(3, -1))
    assert np.array_equal(labels, fake_fashion["t10k-labels-idx1-ubyte.gz"][0])


def test_fashion_found_via_env_and_through_load_dataset(tmp_path, fake_fashion, monkeypatch):
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(write_fakes(tmp_path / "env", fake_fashion)))
    ds = data.load_dataset("fashion-mnist", cache_dir=tmp_path / "c")
    assert ds.train_images.shape == (5, 784) and ds.test_labels.shape == (3,)
    assert ds.class_names[9] == "Ankle boot" and ds.default_decoder == "bernoulli"


def test_fashion_with_wrong_content_is_rejected(tmp_path, fake_fashion):
    where = write_fakes(tmp_path / "mine", fake_fashion)
    write_idx(where / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz.*SHA-256"):
        data.load_fashion_mnist("test", path=where)


def test_fashion_not_found_says_how_to_get_it(tmp_path, fake_fashion):
    with pytest.raises(DataNotFoundError) as err:
        data.load_fashion_mnist("train", path=tmp_path / "empty", cache_dir=tmp_path / "c")
    message = str(err.value)
    for hint in ("sudo apt-get install dataset-fashion-mnist", "download=True", "--download",
                 "path=DIR", data.FASHION_MNIST_ENV, str(tmp_path / "empty")):
        assert hint in message
    assert not (tmp_path / "c").exists()  # nothing downloaded or created without download=True


def serve(files: dict, corrupt: bool = False):
    """A stand-in for urlopen that serves the fake files' bytes (optionally one byte flipped)."""
    def urlopen(url, timeout):
        assert url.startswith(data.FASHION_MNIST_URL) and timeout > 0
        content = bytearray(files[url.rsplit("/", 1)[1]][1])
        if corrupt:
            content[len(content) // 2] ^= 0xFF
        return io.BytesIO(bytes(content))
    return urlopen


def test_fashion_download_accepts_good_files(tmp_path, fake_fashion, monkeypatch):
    monkeypatch.setattr(idx, "_urlopen", serve(fake_fashion))
    cache = tmp_path / "cache"
    images, labels = data.load_fashion_mnist("train", download=True, cache_dir=cache)
    assert np.array_equal(labels, fake_fashion["train-labels-idx1-ubyte.gz"][0])
    assert sorted(p.name for p in cache.iterdir()) == sorted(fake_fashion)
    monkeypatch.setattr(idx, "_urlopen", None)  # second load: no network needed
    assert np.array_equal(data.load_fashion_mnist("test", cache_dir=cache)[1],
                          fake_fashion["t10k-labels-idx1-ubyte.gz"][0])


def test_fashion_download_rejects_corrupt_files_and_leaves_nothing(tmp_path, fake_fashion,
                                                                   monkeypatch):
    monkeypatch.setattr(idx, "_urlopen", serve(fake_fashion, corrupt=True))
    cache = tmp_path / "cache"
    with pytest.raises(DataFileError, match="SHA-256.*Nothing was saved"):
        data.load_fashion_mnist("train", download=True, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_fashion_download_without_network_says_how_to_get_it(tmp_path, fake_fashion,
                                                             monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(idx, "_urlopen", offline)
    with pytest.raises(DataNotFoundError, match="could not download.*apt-get install"):
        data.load_fashion_mnist("test", download=True, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.skipif(not data.FASHION_MNIST_DEBIAN_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(monkeypatch, tmp_path):
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    images, labels = data.load_fashion_mnist("test", cache_dir=tmp_path)
    assert images.shape == (10000, 784) and list(labels[:4]) == [9, 2, 1, 1]


# --- binarisation and batches ----------------------------------------------------------------


def test_static_binarisation_is_seeded_and_binary(mnist_train):
    images = mnist_train[0][:2000]
    a, b = data.binarize_static(images, seed=7), data.binarize_static(images, seed=7)
    assert a.dtype == np.uint8 and a.shape == images.shape and set(np.unique(a)) == {0, 1}
    assert np.array_equal(a, b) and not np.array_equal(a, data.binarize_static(images, seed=8))
    assert np.all(a[images == 0] == 0) and np.all(a[images == 255] == 1)


def collect(images, batch_size, **kwargs):
    return [b.copy() for b in iterate_batches(images, batch_size, **kwargs)]


def test_dynamic_binarisation_mean_matches_grey_mean():
    images = data.load_mnist("test")[0]
    batches = collect(images, 500, rng=np.random.default_rng(0), binarize="dynamic")
    x = np.concatenate(batches)
    assert set(np.unique(x)) == {0.0, 1.0}
    # 7.84M Bernoulli draws: the standard error of their mean is ~1e-4, so 1e-3 is ~9 sigma
    assert abs(x.mean() - (images / 255).mean()) < 1e-3


def test_same_rng_state_same_epoch_bitwise_different_rng_different_draws():
    images = data.load_mnist("test")[0][:1000]
    np.random.seed(1)  # noqa: NPY002 -- the legacy global state must play no part
    a = collect(images, 64, rng=np.random.default_rng(42), binarize="dynamic")
    np.random.seed(2)  # noqa: NPY002
    b = collect(images, 64, rng=np.random.default_rng(42), binarize="dynamic")
    c = collect(images, 64, rng=np.random.default_rng(43), binarize="dynamic")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dynamic_batches_are_the_numpy_passes_bit_for_bit(shuffle, dtype):
    """kernels.gather_binarize (gather, lookup, comparison in one pass) gives the batches of
    the NumPy passes it replaced, from the same generator, the last short batch included, and
    leaves the generator in the same state."""
    images = data.load_mnist("test")[0][:250]
    rng, ref_rng = np.random.default_rng(7), np.random.default_rng(7)
    got = collect(images, 64, rng=rng, binarize="dynamic", dtype=dtype, shuffle=shuffle)
    order = ref_rng.permutation(250) if shuffle else np.arange(250)
    p = (np.arange(256) / 255).astype(dtype)
    want = []
    for start in range(0, 250, 64):
        grey = p[images[order[start:start + 64]]]
        want.append((grey > ref_rng.random(grey.shape, dtype=dtype)).astype(dtype))
    assert [g.shape for g in got] == [w.shape for w in want] and got[-1].shape == (58, 784)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert rng.bit_generator.state == ref_rng.bit_generator.state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_gives_grey_values_over_255_exactly(dtype):
    images = np.arange(256 * 3, dtype=np.int64).reshape(3, 256).astype(np.uint8)
    x = np.concatenate(collect(images, 2, rng=np.random.default_rng(0), binarize="none",
                               dtype=dtype, shuffle=False))
    assert x.dtype == dtype and np.array_equal(x, (images / 255).astype(dtype))
    assert np.array_equal(data.to_float(images, dtype), x)
    assert "none" in data.NONE_BINARIZATION_WARNING


@pytest.mark.parametrize("batch_size", [1, 7, 50, 50 + 13])
@pytest.mark.parametrize("binarize", ["none", "static"])
def test_every_row_exactly_once_per_epoch(batch_size, binarize):
    n = 50
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 3, axis=1)  # row i holds i
    if binarize == "static":
        images = (images > 0).astype(np.uint8)
    batches = collect(images, batch_size, rng=np.random.default_rng(5), binarize=binarize)
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches) == -(-n // batch_size) and sum(map(len, batches)) == n
    if binarize == "none":
        seen = np.rint(np.concatenate(batches)[:, 0] * 255).astype(int)
        assert sorted(seen) == list(range(n)) and (batch_size >= n or list(seen) != sorted(seen))


def test_batches_are_views_of_one_reused_buffer():
    images = np.zeros((10, 4), dtype=np.uint8)
    out = np.empty((4, 4), dtype=np.float32)
    batches = list(iterate_batches(images, 4, rng=np.random.default_rng(0), binarize="dynamic",
                                   out=out))
    assert [b.shape for b in batches] == [(4, 4), (4, 4), (2, 4)]
    assert all(np.shares_memory(b, out) for b in batches)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, ValueError, "batch_size"),
    ({"binarize": "otsu"}, ValueError, "'dynamic', 'static', 'none'"),
    ({"rng": 0}, TypeError, "Generator"),
    ({"dtype": np.int32}, ValueError, "float32"),
    ({"binarize": "static"}, ValueError, "binarize_static"),
    ({"out": np.empty((1, 4), np.float32)}, ValueError, "out must be"),
])
def test_iterate_batches_validates_arguments_eagerly(kwargs, error, pattern):
    args = {"batch_size": 2, "rng": np.random.default_rng(0), "binarize": "none", **kwargs}
    images = np.full((5, 4), 200, dtype=np.uint8)
    with pytest.raises(error, match=pattern):
        iterate_batches(images, args.pop("batch_size"), **args)  # raises before any next()
