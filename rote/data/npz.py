"""The one npz reader: Keras' mnist.npz (checked against MNIST's pins) and a user's own file (``--dataset npz:PATH``).

Both are a zip of four arrays, ``x_train``, ``y_train``, ``x_test``,
``y_test``, opened by ``open_npz`` without pickles (an npz never needs them;
refusing them keeps a hostile file from running code).

Keras' mnist.npz holds uint8 images and byte-sized labels; each array is
checked against the SHA-256 of the matching IDX file's payload (the file
minus its header, i.e. exactly the array's bytes), so the same pins cover
both forms of MNIST.

A user's file: images may be (N, H, W) grey, (N, H, W, C) or (N, C, H, W)
with C in 1, 3 or 4 (an optional ``layout`` array, 'NCHW' or 'NHWC', settles
a shape such as (N, 3, H, 3)); uint8 images are scaled as the built-in
datasets are (x / 255 - 0.5), float images are used as they are and must be
finite and already scaled.  Labels are integers 0..K-1, K is the largest
training label plus one, and no test label may lie outside them.  The file's
SHA-256 goes into each run's config.json (environment.dataset_sha256): the
setting names the path, the hash the bytes.  From here a user's dataset
takes the same road as MNIST (rote.data.prepare).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

from rote.data.checksums import sha256_bytes
from rote.data.dataset import Dataset, channels_first
from rote.data.formats import BadFiles, Reader, dataset_dir, one_line
from rote.data.idx import as_images, as_labels
from rote.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")
PREFIX = "npz:"
# Float pixels rote is handed are used as they are; uint8 ones become x/255 - 0.5.  Non-negative floats
# reaching above this are taken for 0-255 pixel values stored as floats, which would train on a scale 255
# times too large.
FLOAT_PIXEL_MAX = 2.0


def open_npz(path: Path, fix: str, data: bytes | None = None) -> dict[str, np.ndarray]:
    """The four arrays (and ``layout`` if the file has one) of an npz at ``path`` (or its bytes ``data``).

    Every way a file can fail to be one is a one-line DataError ending in ``fix``.
    """
    source = io.BytesIO(data) if data is not None else path
    # np.load guesses the format from content; without this check a stray
    # text file would be reported as "pickled data", which misleads.
    if (data is not None or path.is_file()) and not zipfile.is_zipfile(source):
        raise DataError(f"{path} is not an .npz (zip) file; {fix}")
    if data is not None:
        source.seek(0)
    try:
        with np.load(source, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)} "
                                f"(it has {', '.join(npz.files) or 'none'}); {fix}")
            return {k: npz[k] for k in (*KEYS, "layout") if k in npz.files}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .npz file ({one_line(exc)}); {fix}") from None


# -- Keras' mnist.npz ---------------------------------------------------------------------------------------


def read_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a Keras-style mnist.npz: (x_train, y_train, x_test, y_test), images uint8 as stored, labels int64."""
    path = Path(path)
    fix = "replace it with a fresh copy of Keras' mnist.npz"
    arrays = open_npz(path, fix)
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
            raise DataError(f"{path} has {len(x)} x_{split} images but {len(y)} y_{split} labels; {fix}")
        out += [x, y]
    return tuple(out)  # type: ignore[return-value]


class KerasNpzReader(Reader):
    """Keras' mnist.npz, in a directory (as ``spec.npz_name``) or named itself; each array checked against the
    IDX payload pins.  The npz is not a set of pinned files, so this reader loads and reports it whole."""

    takes_file = True

    def _path(self, spec, where: Path) -> Path | None:
        if not spec.npz_name:
            return None
        path = where if where.is_file() else dataset_dir(spec, where) / spec.npz_name
        return path if path.is_file() and path.suffix == ".npz" else None

    def present(self, spec, where: Path) -> bool:
        return self._path(spec, where) is not None

    def load(self, spec, where: Path) -> Dataset:
        path = self._path(spec, where) or where
        arrays = read_npz(path)
        problems = []
        for f, array, key in zip(spec.files, arrays, KEYS):
            actual = sha256_bytes(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
            if actual != f.payload_sha256:
                problems.append(f"{path} [{key}] does not match {f.stem}: SHA-256 of its bytes is {actual}, "
                                f"expected {f.payload_sha256}")
        if problems:
            raise BadFiles("; ".join(problems), [path])
        return Dataset(spec.name, *arrays, source=str(path), image_shape=spec.image_shape, classes=spec.classes)

    def status(self, spec, where: Path):
        path = self._path(spec, where)
        try:
            self.load(spec, where)
            state = "ok"
        except DataError as exc:
            state = f"corrupt: {one_line(exc)}"
        return str(path), dict.fromkeys(spec.stems, state)


# -- a user's file ------------------------------------------------------------------------------------------


def is_npz_name(name: str) -> bool:
    return name.startswith(PREFIX)


def npz_path(name: str) -> Path:
    if not name[len(PREFIX):].strip():
        raise DataError("dataset 'npz:' needs a path, e.g. --dataset npz:data/mine.npz")
    return Path(name[len(PREFIX):]).expanduser()


def check_npz_name(name: str) -> None:
    """Cheap check at config time: the file exists."""
    path = npz_path(name)
    if not path.is_file():
        raise DataError(f"dataset '{name}': no file {path} (expected an .npz with arrays {', '.join(KEYS)})")


def _images(x: np.ndarray, where: str, layout: str | None) -> np.ndarray:
    """A user's images as (N, C, H, W), uint8 as stored or float32; refused where they are quietly wrong."""
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where} is {x.dtype}; expected uint8 (0-255) or float images")
    x = channels_first(x, what=where, layout=layout)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        nan = int(np.count_nonzero(np.isnan(x)))
        raise DataError(f"{where} has {bad} non-finite pixel{'s' * (bad != 1)} ({nan} NaN, {bad - nan} infinite) of {x.size}; "
                        f"replace them or drop those images")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo >= 0 and FLOAT_PIXEL_MAX < hi <= 255:
        raise DataError(f"{where} holds float pixels from {lo:g} to {hi:g}, which look like 0-255 values; "
                        f"float images are used as they are and should already be scaled (rote scales uint8 pixels "
                        f"to x/255 - 0.5, from -0.5 to 0.5): divide by 255 (and subtract 0.5), or store uint8 pixels")
    return x


# the most classes a user's labels may name: the model's last layer has one output per class
MAX_CLASSES = 100_000


def load_user_npz(name: str) -> Dataset:
    path = npz_path(name)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"dataset '{name}': cannot read {path}: {e.strerror or e}") from None
    arrays = open_npz(path, "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)", blob)
    layout = str(arrays["layout"]) if "layout" in arrays else None
    xs = {split: _images(arrays[f"x_{split}"], f"{path} [x_{split}]", layout) for split in ("train", "test")}
    if xs["train"].shape[1:] != xs["test"].shape[1:]:
        raise DataError(f"{path}: x_train images are {xs['train'].shape[1:]} but x_test images are {xs['test'].shape[1:]}")
    ys = {}
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y  # (N, 1), as Keras' CIFAR gives them
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(xs[split]):
            raise DataError(f"{path} [y_{split}] must be {len(xs[split])} integer labels, got {y.dtype} {y.shape}")
        if len(y) and y.min() < 0:
            raise DataError(f"{path} [y_{split}] has negative labels; expected 0..K-1")
        ys[split] = y.astype(np.int64)
    for split in ("train", "test"):
        if not len(ys[split]):
            raise DataError(f"{path} holds no {split} images (x_{split} is empty); rote trains on the training "
                            f"images and measures generalisation on the test images: give it both")
    largest = int(ys["train"].max())
    if largest >= MAX_CLASSES:
        raise DataError(f"{path} [y_train] has the label {largest}; labels must be class numbers 0..K-1 with "
                        f"K at most {MAX_CLASSES:,} (renumber the classes 0, 1, 2, ...)")
    classes = largest + 1
    if classes < 2:
        raise DataError(f"{path}: the training labels name fewer than two classes")
    outside = int(np.count_nonzero(ys["test"] >= classes))
    if outside:
        # K is read off the training labels; a test class beyond them could never be predicted
        raise DataError(f"{path} [y_test] has {outside} label{'s' * (outside != 1)} above {classes - 1}, the largest training label "
                        f"(up to {int(ys['test'].max())}); a class the model never trains on cannot be predicted: "
                        f"drop those test images or fix their labels")
    return Dataset(name, xs["train"], ys["train"], xs["test"], ys["test"], source=str(path),
                   image_shape=tuple(int(d) for d in xs["train"].shape[1:]), classes=classes,
                   sha256=hashlib.sha256(blob).hexdigest())
