"""A user's dataset from one .npz file: ``--dataset npz:PATH``.

The file holds four arrays, ``x_train``, ``y_train``, ``x_test``, ``y_test``.
Images may be (N, H, W) grey, (N, H, W, C) or (N, C, H, W) with C in 1, 3 or
4; uint8 images are scaled as the built-in datasets are (x / 255 - 0.5),
float images are used as they are. Labels are integers 0..K-1, and K is the
largest label plus one. The file's SHA-256 goes into each run's config.json
(environment.dataset_sha256): the setting names the path, the hash the bytes.
From here a user's dataset takes the same road as MNIST (rote.data.prepare).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from rote.data.registry import Dataset
from rote.errors import DataError

PREFIX = "npz:"
KEYS = ("x_train", "y_train", "x_test", "y_test")


def is_npz_name(name: str) -> bool:
    return name.startswith(PREFIX)


def npz_path(name: str) -> Path:
    path = Path(name[len(PREFIX):]).expanduser()
    if not str(name[len(PREFIX):]).strip():
        raise DataError("dataset 'npz:' needs a path, e.g. --dataset npz:data/mine.npz")
    return path


def check_npz_name(name: str) -> None:
    """Cheap check at config time: the file exists."""
    path = npz_path(name)
    if not path.is_file():
        raise DataError(f"dataset '{name}': no file {path} (expected an .npz with arrays {', '.join(KEYS)})")


def _channels_first(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]  # (N, H, W) grey
    if x.ndim == 4:
        if x.shape[1] in (1, 3, 4) and x.shape[3] not in (1, 3, 4):
            return x
        if x.shape[3] in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)  # (N, H, W, C)
    raise DataError(f"{what} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4")


def load_user_npz(name: str) -> Dataset:
    path = npz_path(name)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"dataset '{name}': cannot read {path}: {e.strerror or e}") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}; it has {', '.join(z.files) or 'no arrays'}")
            arrays = {k: z[k] for k in KEYS}
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"{path} is not a readable .npz ({' '.join(str(e).split())})") from None
    xs = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{path} [x_{split}] is {x.dtype}; expected uint8 (0-255) or float images")
        x = _channels_first(x, f"{path} [x_{split}]")
        xs[split] = np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32))
    if xs["train"].shape[1:] != xs["test"].shape[1:]:
        raise DataError(f"{path}: x_train images are {xs['train'].shape[1:]} but x_test images are {xs['test'].shape[1:]}")
    ys = {}
    for split in ("train", "test"):
        y = arrays[f"y_{split}"].reshape(-1) if arrays[f"y_{split}"].ndim == 2 and arrays[f"y_{split}"].shape[1] == 1 \
            else arrays[f"y_{split}"]
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(xs[split]):
            raise DataError(f"{path} [y_{split}] must be {len(xs[split])} integer labels, got {y.dtype} {y.shape}")
        if len(y) and y.min() < 0:
            raise DataError(f"{path} [y_{split}] has negative labels; expected 0..K-1")
        ys[split] = y.astype(np.int64)
    classes = int(max(ys["train"].max(initial=0), ys["test"].max(initial=0))) + 1
    if classes < 2:
        raise DataError(f"{path}: the labels name fewer than two classes")
    return Dataset(name, xs["train"], ys["train"], xs["test"], ys["test"], source=str(path),
                   image_shape=tuple(int(d) for d in xs["train"].shape[1:]), classes=classes,
                   sha256=hashlib.sha256(blob).hexdigest())
