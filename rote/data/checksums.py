"""Checking a file against its pin: the one place rote hashes data and says it does not match.

A pin (``registry.FileSpec``, ``registry.CifarBatch``) names its hash
algorithm, its hex digest, the most bytes a real copy can have, and whether
a gzip copy is accepted (then the decompressed bytes are what is pinned).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from pathlib import Path

from rote.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
# How the algorithms are written in messages.
NAMES = {"sha256": "SHA-256", "md5": "MD5"}


def digest(algorithm: str, data: bytes) -> str:
    # usedforsecurity=False: MD5 pins are what the publishers give (see registry); FIPS builds allow it so
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    out = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            out.update(chunk)
    return out.hexdigest()


def gunzip(data: bytes, where: str, limit: int | None = None) -> bytes:
    """Decompress gzip bytes, refusing output longer than ``limit`` bytes.

    The limit stops a corrupt or hostile .gz from expanding without bound
    before its checksum has had a chance to reject it.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read() if limit is None else stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{where} is not a readable gzip file ({exc}); replace it with a fresh copy") from None
    if limit is not None and len(out) > limit:
        raise DataError(f"{where} decompresses to more than the expected {limit} bytes; replace it with a fresh copy")
    return out


def verify(pin, data: bytes, where: str, *, label: str | None = None, fix: str = "") -> bytes:
    """The pinned bytes if ``data`` (or, where the pin allows gzip, what it decompresses to) matches the pin.

    Otherwise a one-line DataError naming ``where``, both hashes and ``fix``.
    ``label`` is what the file should have been (the pin's stem by default).
    """
    compressed = pin.gzip_ok and data[:2] == GZIP_MAGIC
    if compressed:
        data = gunzip(data, where, limit=pin.size)
    actual = digest(pin.algorithm, data)
    if actual == pin.digest:
        return data
    # "of its contents" only where a compressed copy is possible, so the reader knows which bytes were hashed
    of = (" of its decompressed contents" if compressed else " of its contents") if pin.gzip_ok else ""
    size = f"{len(data)} bytes" + (f", expected {pin.size}" if pin.size is not None else "")
    raise DataError(f"{where} is not the expected {label or pin.stem}: {NAMES[pin.algorithm]}{of} is {actual}, "
                    f"expected {pin.digest} ({size})" + (f"; {fix}" if fix else ""))


def read_pinned(pin, path: Path, *, label: str | None = None) -> bytes:
    """A pinned file's bytes from disk, unchecked; a file far larger than a real copy is refused unread."""
    try:
        size = path.stat().st_size
        if size > pin.max_bytes:
            raise DataError(f"{path} is not the expected {label or pin.stem}: it is {size} bytes, "
                            f"far more than the {pin.max_bytes} a real copy can have")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
