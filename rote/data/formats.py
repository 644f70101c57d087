"""The interface every file format's reader implements, and the steps all of them share.

A dataset spec (``registry``) lists its pinned files and the readers of the
forms it comes in (``spec.readers``, tried in order).  A reader says whether a
place holds the dataset in its form (``present``), finds each pinned file's
bytes there (``find``) and turns one verified file into arrays (``decode``),
then all of them into the four arrays of a ``Dataset`` (``assemble``).
Verifying, collecting every bad file into one message and telling missing
from corrupt files in ``status`` are done here, once, for every format.
A reader whose form is not a set of pinned files (Keras' mnist.npz) overrides
``load`` and ``status`` instead.

Adding a dataset is a spec; adding a file format is a reader.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rote.data.checksums import read_pinned
from rote.data.dataset import Dataset
from rote.errors import DataError

# Each pinned file's way to its bytes (None where it is missing) and the path to blame if they are bad.
Found = dict[str, tuple[Callable[[], bytes] | None, Path]]


class BadFiles(DataError):
    """Files that exist but fail verification; carries their paths (the cache deletes its own)."""

    def __init__(self, message: str, paths: list[Path]) -> None:
        super().__init__(message)
        self.paths = paths


def dataset_dir(spec, directory: Path) -> Path:
    """``<dir>/<name>/`` if it exists (lets one directory hold several datasets), else ``<dir>``."""
    sub = Path(directory) / spec.name
    return sub if sub.is_dir() else Path(directory)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


class Reader:
    # A single file (a tarball, an npz) may be named instead of a directory.
    takes_file = False

    def present(self, spec, where: Path) -> bool:
        """Whether ``where`` holds any of the dataset in this reader's form."""
        raise NotImplementedError

    def find(self, spec, where: Path) -> tuple[Path, Found]:
        """(the place to name in messages, each pinned file's bytes and path); nothing is checked yet."""
        raise NotImplementedError

    def lacks(self, spec, location: Path, missing: list[str]) -> str:
        return f"{location} lacks {', '.join(missing)}"

    def where(self, spec, pin, path: Path) -> str:
        """How a file is named in messages (a tarball's member also names the tarball)."""
        return str(path)

    def decode(self, spec, pin, data: bytes, where: str) -> Any:
        """One verified file's bytes -> whatever ``assemble`` needs."""
        raise NotImplementedError

    def assemble(self, spec, decoded: dict[str, Any], location: Path) -> tuple[np.ndarray, ...]:
        """The decoded files -> (x_train, y_train, x_test, y_test)."""
        raise NotImplementedError

    # -- shared by every reader of pinned files ---------------------------------------------------

    def load(self, spec, where: Path) -> Dataset:
        """Load and verify; a DataError lists every missing or bad file (BadFiles: bad ones, with their paths)."""
        location, found = self.find(spec, Path(where))
        missing = [stem for stem, (read, _) in found.items() if read is None]
        if missing:
            raise DataError(self.lacks(spec, location, missing))
        problems: list[str] = []
        bad: list[Path] = []
        decoded = {}
        for pin in spec.files:
            read, path = found[pin.stem]
            named = self.where(spec, pin, path)
            try:
                data = spec.check(pin, read(), named)
                decoded[pin.stem] = self.decode(spec, pin, data, named)
            except DataError as exc:
                problems.append(str(exc))
                bad.append(path)
        if problems:
            raise BadFiles("; ".join(problems), sorted(set(bad)))
        arrays = self.assemble(spec, decoded, location)
        return Dataset(spec.name, *arrays, source=str(location), image_shape=spec.image_shape, classes=spec.classes)

    def status(self, spec, where: Path) -> tuple[str | None, dict[str, str]]:
        """(where the dataset is if every file is there, {stem: "ok" | "missing" | "corrupt: ..."}); never decodes."""
        if not self.present(spec, where):
            return None, dict.fromkeys(spec.stems, "missing")
        try:
            location, found = self.find(spec, where)
        except DataError as exc:  # an unreadable tarball
            return None, dict.fromkeys(spec.stems, f"corrupt: {one_line(exc)}")
        states = {}
        for pin in spec.files:
            read, path = found[pin.stem]
            if read is None:
                states[pin.stem] = "missing"
                continue
            try:
                spec.check(pin, read(), self.where(spec, pin, path))
                states[pin.stem] = "ok"
            except DataError as exc:
                states[pin.stem] = f"corrupt: {one_line(exc)}"
        complete = all(read is not None for read, _ in found.values())
        return (str(location) if complete else None), states


def reader_at(spec, where: Path) -> Reader:
    """The first of the spec's readers whose form is at ``where``; the first reader if none is (it says what lacks)."""
    return next((r for r in spec.readers if r.present(spec, where)), spec.readers[0])


def load(spec, where: Path) -> Dataset:
    """Load a verified dataset from a directory (or a file one of its readers takes)."""
    return reader_at(spec, Path(where)).load(spec, Path(where))


def takes_file(spec, path: Path) -> bool:
    """Whether one of the spec's readers reads this file named itself (a CIFAR tarball, an mnist.npz)."""
    return any(r.takes_file and r.present(spec, path) for r in spec.readers)


def file_reader(pin, path: Path, label: str | None = None) -> Callable[[], bytes]:
    """A pinned file on disk, read when asked (a file far larger than the real one is refused unread)."""
    return lambda: read_pinned(pin, path, label=label)


def read_members(path: Path, spec, prefix: str, fix: str) -> dict[str, bytes]:
    """The bytes of each pinned file found in a tarball as ``<prefix>/<stem>``, unchecked; missing ones left out.

    Members are read into memory by exact name and never extracted, so nothing
    in a tarball can write anywhere.  ``fix`` ends every error message.
    """
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for pin in spec.files:
                name = f"{prefix}/{pin.stem}"
                try:
                    member = tar.getmember(name)
                except KeyError:
                    continue
                if not member.isfile() or member.size > pin.max_bytes:
                    raise DataError(f"{path}: {name} is not a plain file of the expected size; {fix}")
                handle = tar.extractfile(member)
                assert handle is not None
                found[pin.stem] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path} as a tarball ({exc}); {fix}") from None
    return found
