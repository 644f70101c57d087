"""The IDX format of MNIST and Fashion-MNIST (raw or gzip): parsing, and the reader of a directory of IDX files.

The IDX layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a dtype
code, the number of dimensions, then one big-endian uint32 per dimension, then
the values in row-major order.  Only dtype 0x08 (unsigned byte) is supported,
because that is all MNIST and Fashion-MNIST use.

Images come back uint8 as stored, (N, H, W) or (N, H, W, C), and labels int64
(N,), so the rest of rote never has to think about where the arrays came from;
whether the image shape is the dataset's is the Dataset's check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rote.data.checksums import GZIP_MAGIC, gunzip  # noqa: F401  (gunzip: the IDX files may come as .gz)
from rote.data.formats import Reader, dataset_dir, file_reader
from rote.errors import DataError

IDX_UBYTE = 0x08


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


class IdxReader(Reader):
    """A directory of the four IDX files, each raw or .gz (the raw one is preferred: it needs no decompression)."""

    def _paths(self, spec, directory: Path) -> dict[str, Path | None]:
        candidates = {f.stem: (directory / f.stem, directory / f"{f.stem}.gz") for f in spec.files}
        return {stem: next((p for p in paths if p.is_file()), None) for stem, paths in candidates.items()}

    def present(self, spec, where: Path) -> bool:
        return where.is_dir() and any(self._paths(spec, dataset_dir(spec, where)).values())

    def find(self, spec, where: Path):
        directory = dataset_dir(spec, where)
        paths = self._paths(spec, directory) if directory.is_dir() else dict.fromkeys(spec.stems)
        return directory, {f.stem: (None, directory / f.stem) if paths[f.stem] is None
                           else (file_reader(f, paths[f.stem]), paths[f.stem]) for f in spec.files}

    def lacks(self, spec, location: Path, missing: list[str]) -> str:
        also = f", or {spec.npz_name}" if spec.npz_name else ""
        return f"{location} lacks {', '.join(missing)} (each may be raw or .gz{also})"

    def decode(self, spec, pin, data: bytes, where: str) -> np.ndarray:
        array = parse_idx(data, where)
        return as_images(array, where) if pin.kind == "images" else as_labels(array, where)

    def assemble(self, spec, decoded, location):
        return tuple(decoded[f.stem] for f in spec.files)  # train images, train labels, test images, test labels
