"""rote's cache of verified files: ``<cache>/<name>/<stem>``, each a pinned file as pinned (IDX files
uncompressed, CIFAR batches as published).  Nothing lands here unverified, and every write is atomic."""

from __future__ import annotations

import os
from pathlib import Path

from rote.atomic import write_atomic
from rote.data.checksums import read_pinned
from rote.errors import DataError


def cache_dir() -> Path:
    """rote's cache root: $ROTE_CACHE_DIR, else $XDG_CACHE_HOME/rote, else ~/.cache/rote."""
    if os.environ.get("ROTE_CACHE_DIR"):
        return Path(os.environ["ROTE_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rote"
    return Path.home() / ".cache" / "rote"


def install(spec, pin, data: bytes, dest_dir: Path, where: str) -> None:
    """Verify ``data`` against the pin (a gzip copy where the pin allows it) and store it as ``dest_dir/<stem>``."""
    write_atomic(dest_dir / pin.stem, spec.check(pin, data, where))


def install_all(spec, files: dict[str, tuple[bytes, str]], dest_dir: Path) -> None:
    """Verify every file ({stem: (bytes, where they came from)}) before writing any, so that a bad
    download leaves the cache as it was."""
    checked = {pin.stem: spec.check(pin, *files[pin.stem]) for pin in spec.files}
    for stem, data in checked.items():
        write_atomic(dest_dir / stem, data)


def is_cached(spec, pin, dest_dir: Path) -> bool:
    """Whether a verified copy of the file is in the cache already (an earlier source may have stored it)."""
    try:
        spec.check(pin, read_pinned(pin, dest_dir / pin.stem), str(dest_dir / pin.stem))
    except DataError:  # a missing file is a DataError too
        return False
    return True
