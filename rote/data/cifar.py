"""Reader for CIFAR's python format: MD5-checked pickled batches, loose or in the official tarball.

A batch (``data_batch_1`` ... ``data_batch_5``, ``test_batch``) is a Python 2
pickle of a dict whose ``b"data"`` is a (N, 3072) uint8 array, each row the
red, green and blue 32x32 planes one after another, and whose ``b"labels"`` is
a list of N ints in 0..9.

Unpickling runs code chosen by whoever wrote the file: a pickle from an
untrusted source can do anything the user can.  So a batch is unpickled only
through ``parse_batch``, which checks its MD5 against the pin first; nothing
else in rote calls pickle.  ``encoding="bytes"`` keeps the Python 2 strings
as bytes (the keys are b"data", b"labels") rather than guessing a text encoding.

``CifarReader`` finds the batches (loose in a directory, in the extracted
``cifar-10-batches-py/``, or in ``cifar-10-python.tar.gz``); checking them is
``formats``' shared step and caching them ``cache``'s.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from rote.data.formats import Reader, dataset_dir, file_reader, read_members
from rote.errors import DataError

# A real batch is about 31 MB; anything much larger is not one, and is not
# worth reading into memory to find that out.
MAX_BATCH_BYTES = 40 << 20
# The official tarball is 170,498,071 bytes.
MAX_ARCHIVE_BYTES = 256 << 20


def parse_batch(batch, data: bytes, where: str, spec) -> tuple[np.ndarray, np.ndarray]:
    """Verify a batch's bytes, then unpickle them: (images uint8 (N, C, H, W), labels int64 (N,)).

    The checksum comes first, always: see the module docstring.
    """
    spec.check(batch, data, where)
    fix = f"replace it with the file from a fresh {spec.by_hand}"
    try:
        entry = pickle.loads(data, encoding="bytes")  # safe only because the MD5 matched the pin
    except Exception as exc:  # a pickle can fail in many ways; none is the user's bug
        raise DataError(f"{where} is not a readable pickle ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        keys = sorted(map(repr, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"{where} is not a CIFAR batch: expected a dict with b'data' and b'labels', got {keys}; {fix}")
    images, labels = entry[b"data"], entry[b"labels"]
    c, h, w = spec.image_shape
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != c * h * w:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"{where}: b'data' must be uint8 (N, {c * h * w}), got {got}; {fix}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: b'labels' must be a list of integers; {fix}") from None
    if labels.shape != (len(images),):
        raise DataError(f"{where}: {len(images)} images but b'labels' has shape {labels.shape}; {fix}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.classes):
        raise DataError(f"{where}: labels outside 0..{spec.classes - 1}; {fix}")
    # rows are the channel planes one after another: (N, 3072) -> (N, 3, 32, 32)
    return np.ascontiguousarray(images.reshape(-1, c, h, w)), labels


def read_tarball(path: Path, spec) -> dict[str, bytes]:
    """The bytes of each batch in the official tarball, by exact member name; unchecked, missing ones left out."""
    return read_members(path, spec, spec.folder, f"replace it with a fresh {spec.by_hand}")


def assemble(spec, parsed: dict[str, tuple[np.ndarray, np.ndarray]], where: str):
    """Concatenate parsed batches into (x_train, y_train, x_test, y_test), checking the split sizes."""
    out = []
    for split, expected in (("train", spec.n_train), ("test", spec.n_test)):
        parts = [parsed[b.stem] for b in spec.batches if b.split == split]
        x = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, *spec.image_shape), np.uint8)
        y = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        if len(y) != expected:
            raise DataError(f"{where} holds {len(y)} {split} images, expected {expected}; "
                            f"replace its batches with those of a fresh {spec.by_hand}")
        out += [x, y]
    return tuple(out)


class CifarReader(Reader):
    """CIFAR's python batches: loose in a directory (rote's cache, or the extracted folder named itself),
    in the extracted folder inside it, or in the official tarball inside it or named itself."""

    takes_file = True  # the tarball

    def _location(self, spec, where: Path) -> tuple[str, Path] | None:
        if where.is_file():
            return "tarball", where
        directory = dataset_dir(spec, where)
        for d in (directory, directory / spec.folder):
            if any((d / stem).is_file() for stem in spec.stems):
                return "files", d
        if (directory / spec.archive).is_file():
            return "tarball", directory / spec.archive
        return None

    def present(self, spec, where: Path) -> bool:
        return self._location(spec, where) is not None

    def find(self, spec, where: Path):
        found = self._location(spec, where)
        if found is None:
            raise DataError(f"{dataset_dir(spec, where)} holds neither {spec.folder}/ nor {spec.archive} "
                            f"nor the batches {', '.join(spec.stems)}")
        kind, location = found
        if kind == "tarball":
            members = read_tarball(location, spec)
            return location, {b.stem: ((lambda data=members[b.stem]: data) if b.stem in members else None, location)
                              for b in spec.batches}
        return location, {b.stem: (file_reader(b, location / b.stem, spec.label(b)) if (location / b.stem).is_file()
                                   else None, location / b.stem) for b in spec.batches}

    def where(self, spec, pin, path: Path) -> str:
        return str(path) if path.name == pin.stem else f"{path}:{spec.folder}/{pin.stem}"

    def decode(self, spec, pin, data: bytes, where: str):
        return parse_batch(pin, data, where, spec)

    def assemble(self, spec, decoded, location):
        return assemble(spec, decoded, str(location))
