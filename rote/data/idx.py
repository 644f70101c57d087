"""Readers for the MNIST file formats: IDX (raw or gzip) and Keras' mnist.npz.

The IDX layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a dtype
code, the number of dimensions, then one big-endian uint32 per dimension, then
the values in row-major order.  Only dtype 0x08 (unsigned byte) is supported,
because that is all MNIST and Fashion-MNIST use.

Images come back uint8 as stored, (N, H, W) or (N, H, W, C), and labels int64
(N,), so the rest of rote never has to think about where the arrays came from;
whether the image shape is the dataset's is the Dataset's check.
"""

from __future__ import annotations

import gzip
import io
import zlib
import zipfile
from pathlib import Path

import numpy as np

from rote.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def gunzip(data: bytes, where: str, limit: int | None = None) -> bytes:
    """Decompress gzip bytes, refusing output longer than ``limit`` bytes.

    The limit stops a corrupt or hostile .gz from expanding without bound
    before its checksum has had a chance to reject it.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read() if limit is None else stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{where} is not a readable gzip file ({exc}); "
            "replace it with a fresh copy"
        ) from None
    if limit is not None and len(out) > limit:
        raise DataError(
            f"{where} decompresses to more than the expected {limit} bytes; "
            "replace it with a fresh copy"
        )
    return out


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into a uint8 array.

    ``where`` names the file in error messages.
    """
    fix = "replace it with a fresh copy of the original file"
    if len(data) < 4:
        raise DataError(f"{where} is too short to be an IDX file ({len(data)} bytes); {fix}")
    zero, dtype, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00":
        raise DataError(
            f"{where} is not an IDX file (magic bytes {data[:4].hex()}, "
            f"expected 0000 then dtype and rank); {fix}"
        )
    if dtype != IDX_UBYTE:
        raise DataError(
            f"{where} holds IDX dtype 0x{dtype:02x}, but only unsigned bytes (0x08) "
            f"are supported; {fix}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where} is truncated inside its IDX header; {fix}")
    dims = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = 1
    for d in dims:
        expected *= d
    payload = len(data) - header
    if payload < expected:
        raise DataError(
            f"{where} is truncated: its header promises {expected} values "
            f"for shape {dims} but only {payload} bytes follow; {fix}"
        )
    if payload > expected:
        raise DataError(
            f"{where} has {payload - expected} trailing bytes after the "
            f"{expected} values of shape {dims}; {fix}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def as_images(array: np.ndarray, where: str) -> np.ndarray:
    """Check that an array is a stack of images, (N, H, W) or (N, H, W, C); return uint8."""
    if array.ndim not in (3, 4):
        raise DataError(
            f"{where} has shape {array.shape}, expected (N, H, W) or (N, H, W, C) images; "
            "check that it is an images file, not a labels file"
        )
    return np.ascontiguousarray(array, dtype=np.uint8)


def as_labels(array: np.ndarray, where: str) -> np.ndarray:
    """Check that an array is a vector of byte-sized labels; return int64."""
    if array.ndim != 1:
        raise DataError(
            f"{where} has shape {array.shape}, expected (N,) labels; "
            "check that it is a labels file, not an images file"
        )
    return array.astype(np.int64)


def read_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a Keras-style mnist.npz: (x_train, y_train, x_test, y_test).

    Images come back uint8 as stored and labels int64 (N,).
    """
    path = Path(path)
    fix = "replace it with a fresh copy of Keras' mnist.npz"
    # np.load guesses the format from content; without this check a stray
    # text file would be reported as "pickled data", which misleads.
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz (zip) file; {fix}")
    try:
        # allow_pickle=False: an npz is a zip of .npy files and never needs
        # pickled objects; refusing them keeps a hostile file from running code.
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path} lacks the arrays {', '.join(missing)} "
                    f"(it has {', '.join(npz.files) or 'none'}); {fix}"
                )
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc}); {fix}") from None

    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        where = f"{path} [x_{split}]"
        if x.dtype != np.uint8:
            raise DataError(f"{where} has dtype {x.dtype}, expected uint8 pixels; {fix}")
        x = as_images(x, where)
        where = f"{path} [y_{split}]"
        if y.dtype.kind not in "iu":
            raise DataError(f"{where} has dtype {y.dtype}, expected integer labels; {fix}")
        y = as_labels(y, where)
        if len(x) != len(y):
            raise DataError(
                f"{path} has {len(x)} x_{split} images but {len(y)} y_{split} labels; {fix}"
            )
        out += [x, y]
    return tuple(out)  # type: ignore[return-value]

