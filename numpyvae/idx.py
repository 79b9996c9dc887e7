"""Reading and writing IDX files, the format MNIST and Fashion-MNIST are published in.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the payload:

    bytes 0-1   0x00 0x00                 (always zero)
    byte  2     type code                 (0x08 = unsigned byte, the only one MNIST uses)
    byte  3     ndim                      (1 for labels, 3 for images)
    then        ndim x uint32, big-endian (the shape, e.g. 60000, 28, 28)
    then        prod(shape) bytes, row-major

The reader trusts nothing: the declared size is computed and capped *before* anything is
allocated, and the payload must have exactly that many bytes. Files may be gzip-compressed
(detected from their first two bytes, whatever their name). Every malformed file raises
``DataFileError`` (a ``ValueError``); a file that cannot be opened raises ``OSError``.

The module also holds what else it takes to trust a data file: SHA-256 checksums (cached per
process) and a download that is checked before it is renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from numpyvae.atomic import atomic_write
from numpyvae.errors import DataFileError

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: MNIST's largest file is 47 MB decompressed
_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
               0x0D: "float32", 0x0E: "float64"}
_CHUNK = 1 << 20  # read 1 MiB at a time so a gzip stream never needs a second full-size copy


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an IDX file of unsigned bytes, raw or gzip-compressed.

    Args:
        path: the file. Gzip is recognised by its magic bytes, not by the ``.gz`` suffix.
        max_bytes: refuse files whose header declares a payload larger than this, so a header
            that lies cannot make us allocate a huge array.

    Returns:
        uint8 array with the shape the header declares, e.g. (60000, 28, 28).

    Raises:
        DataFileError: bad magic, unsupported type code or ndim, declared size over
            ``max_bytes``, truncated or over-long payload, corrupt gzip stream.
        OSError: the file cannot be opened or read.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else raw
        try:
            shape = _read_header(stream, path, max_bytes)
            return _read_payload(stream, path, shape)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise DataFileError(
                f"{path}: the gzip stream is corrupt or truncated ({err}). Expected a complete "
                "gzip-compressed IDX file. Fix: delete the file and download or copy it again."
            ) from err


def _read_header(stream: BinaryIO, path: Path, max_bytes: int) -> tuple[int, ...]:
    """Parse and validate the magic number and dimensions; return the declared shape."""
    magic = _read_exactly(stream, 4, path, "the 4-byte magic number")
    if magic[:2] != b"\x00\x00":
        raise DataFileError(
            f"{path}: bad magic number {magic.hex()}; an IDX file starts with two zero bytes. "
            "Fix: check this is an IDX file (e.g. train-images-idx3-ubyte[.gz]), not HTML or a "
            "partial download."
        )
    type_code, ndim = magic[2], magic[3]
    if type_code != _UBYTE:
        name = _TYPE_NAMES.get(type_code, "unknown")
        raise DataFileError(
            f"{path}: IDX type code 0x{type_code:02x} ({name}) is not supported; expected 0x08 "
            "(unsigned byte), the type of MNIST-style image and label files. Fix: convert the "
            "data to uint8 and write it with numpyvae.idx.write_idx."
        )
    if not 1 <= ndim <= 4:
        raise DataFileError(
            f"{path}: the header declares {ndim} dimensions; expected 1 to 4. "
            "Fix: the file is corrupt or not an IDX file; obtain a fresh copy."
        )
    shape = struct.unpack(f">{ndim}I", _read_exactly(stream, 4 * ndim, path, "the dimensions"))
    declared = math.prod(shape)  # exact Python int: cannot overflow
    if declared > max_bytes:
        raise DataFileError(
            f"{path}: the header declares shape {shape} = {declared:,} bytes, more than the "
            f"limit of {max_bytes:,}. Expected an MNIST-sized file (at most tens of MB). "
            "Fix: the header is corrupt; obtain a fresh copy (or raise max_bytes if it is real)."
        )
    return shape


def _read_payload(stream: BinaryIO, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Read exactly prod(shape) bytes into a fresh array and check nothing follows them."""
    out = np.empty(math.prod(shape), dtype=np.uint8)  # pages are committed only as they fill
    view = memoryview(out)
    filled = 0
    while filled < out.size:
        n = stream.readinto(view[filled : filled + _CHUNK])
        if not n:
            raise DataFileError(
                f"{path}: truncated: the header declares shape {shape} = {out.size:,} payload "
                f"bytes but the file holds only {filled:,}. Fix: the file is incomplete "
                "(interrupted download or copy); obtain it again."
            )
        filled += n
    if stream.read(1):
        raise DataFileError(
            f"{path}: trailing bytes after the {out.size:,}-byte payload declared by shape "
            f"{shape}; expected the file to end there. Fix: the file is corrupt or was "
            "concatenated with something else; obtain a fresh copy."
        )
    return out.reshape(shape)


def _read_exactly(stream: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise DataFileError(
            f"{path}: file ends after {len(data)} of the {n} bytes of {what}; expected a "
            "complete IDX header. Fix: the file is empty or truncated; obtain it again."
        )
    return data


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 array of 1 to 4 dimensions as an IDX file; gzip it if ``path`` ends in .gz.

    The gzip header carries no timestamp, so the same array always gives the same bytes.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(
            f"write_idx({path}): array dtype is {array.dtype}; expected uint8. "
            "Fix: convert first, e.g. np.clip(x, 0, 255).astype(np.uint8)."
        )
    if not 1 <= array.ndim <= 4:
        raise ValueError(
            f"write_idx({path}): array has {array.ndim} dimensions; expected 1 to 4."
        )
    header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    Path(path).write_bytes(payload)


# --- checksums and verified downloads -----------------------------------------------------------

_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex. Computed once per process per (path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


def verify_sha256(path: str | os.PathLike[str], expected: str, fix: str) -> None:
    """Raise DataFileError naming ``path`` unless its SHA-256 is ``expected``; ``fix`` says how."""
    actual = file_sha256(path)
    if actual != expected:
        raise DataFileError(
            f"{path}: SHA-256 checksum mismatch: got {actual}, expected {expected}; the file is "
            f"corrupt, truncated or a different file. Fix: {fix}"
        )


_urlopen = urllib.request.urlopen  # tests replace this to serve local bytes


def fetch(url: str, dest: Path, sha256: str, *, max_bytes: int = 1 << 27) -> None:
    """Download ``url`` to ``dest`` atomically, accepting it only if its SHA-256 matches.

    The bytes go to a temporary file beside ``dest``, which is renamed to ``dest`` only after
    the checksum matched, so an interrupted or corrupt download never leaves a file that looks
    complete. Network failures raise OSError; a wrong checksum raises DataFileError.
    """
    digest, size = hashlib.sha256(), 0
    with atomic_write(dest) as out, _urlopen(url, timeout=60) as response:
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise DataFileError(f"{url}: response exceeds {max_bytes:,} bytes; "
                                    "expected a much smaller file. Fix: check the URL.")
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != sha256:  # inside the block: nothing replaces dest
            raise DataFileError(
                f"{url}: downloaded {size:,} bytes with SHA-256 {digest.hexdigest()}, expected "
                f"{sha256}; the download is corrupt or the server changed the file. Nothing was "
                f"saved to {dest}. Fix: try again; if it persists, get the file another way."
            )
