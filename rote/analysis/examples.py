"""examples.npz: what happened to every training example in every epoch.

One definition of the file for both sides: the training loop writes it with
``save_examples`` and the analysis reads it with ``load_examples``. With E the
number of epochs recorded and N the training examples (in the order of the
training part; column i is the same example in every epoch):

====================  =======  ========  =====================================================
array                 shape    dtype     meaning
====================  =======  ========  =====================================================
``correct``           (E, N)   bool      prediction == given label at that presentation
``prob``              (E, N)   float16   softmax probability of the given label
``margin``            (E, N)   float16   z_y - max_{k != y} z_k, on the logits
``loss``              (E, N)   float16   cross-entropy of that presentation
``el2n``              (E, N)   float16   || softmax - onehot(y) ||_2
``index``             (N,)     int64     index into the dataset
``label``             (N,)     int64     the label trained on (possibly changed)
``true_label``        (N,)     int64     the dataset's label
``changed``           (N,)     bool      label != true_label
``epoch``             (E,)     int64     the epoch of each row (1, 2, ..., E unless thinned)
``pred``              (E, N)   int32     the class predicted at that presentation (argmax of the
                                         logits); absent from records made before it was kept
====================  =======  ========  =====================================================

A long run of a large training set keeps every k-th epoch and its last (see
rote.training.recorder.EXAMPLE_CELLS); ``epoch`` says which, and the scores count
in those epochs.

Every per-epoch value is taken at the example's presentation in that epoch:
training mode, the logits of the training step, before that step's update.
float16 halves the record (60,000 examples x 500 epochs: about 270 MB before
compression); its three significant digits are plenty for a score over epochs.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from rote.atomic import write_atomic
from rote.errors import DataError

NAME = "examples.npz"

# name -> (dtype, True if one row per epoch)
ARRAYS = {
    "correct": (np.bool_, True),
    "prob": (np.float16, True),
    "margin": (np.float16, True),
    "loss": (np.float16, True),
    "el2n": (np.float16, True),
    "index": (np.int64, False),
    "label": (np.int64, False),
    "true_label": (np.int64, False),
    "changed": (np.bool_, False),
    "epoch": (np.int64, None),  # (E,)
    "pred": (np.int32, True),
}
OPTIONAL = {"epoch", "pred"}  # a record may lack these: epoch means 1..E, pred was not kept then


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare
class ExampleRecord:
    """The arrays of examples.npz, cast to their dtypes and checked for shape on construction."""

    correct: np.ndarray  # (E, N) bool
    prob: np.ndarray  # (E, N) float16
    margin: np.ndarray  # (E, N) float16
    loss: np.ndarray  # (E, N) float16
    el2n: np.ndarray  # (E, N) float16
    index: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) int64
    true_label: np.ndarray  # (N,) int64
    changed: np.ndarray  # (N,) bool
    epoch: np.ndarray | None = None  # (E,) int64; None means 1..E
    pred: np.ndarray | None = None  # (E, N) int32 predicted class; None in records made before it was kept

    def __post_init__(self):
        if self.epoch is None:
            object.__setattr__(self, "epoch", np.arange(1, np.shape(self.correct)[0] + 1))
        for f in fields(self):
            if getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, np.asarray(getattr(self, f.name), dtype=ARRAYS[f.name][0]))
        # E from 'correct', N from 'index'; -1 when those are not 2-D and 1-D, which no shape matches
        e = self.correct.shape[0] if self.correct.ndim == 2 else -1
        n = self.index.shape[0] if self.index.ndim == 1 else -1
        for name, (_, per_epoch) in ARRAYS.items():
            if getattr(self, name) is None:
                continue
            shape, want = getattr(self, name).shape, ((e,) if per_epoch is None else (e, n) if per_epoch else (n,))
            if shape != want:
                raise DataError(f"examples: '{name}' has shape {shape}, expected {'(E, N)' if per_epoch else '(N,)'}"
                                f" = {want} (E from 'correct' {self.correct.shape}, N from 'index' {self.index.shape})")
        # changed is redundant, so a disagreement means the columns are not the same examples
        bad = int((self.changed != (self.label != self.true_label)).sum())
        if bad:
            raise DataError(f"examples: 'changed' disagrees with label != true_label for {bad} examples")

    @property
    def epochs(self) -> int:
        return self.correct.shape[0]

    @property
    def n(self) -> int:
        return self.index.shape[0]


def save_examples(path: Path | str, **arrays) -> ExampleRecord:
    """Write examples.npz atomically from the arrays named in ``ARRAYS``; returns the record written.

    ``path`` is the file, or a run directory to write ``examples.npz`` into.
    The arrays are cast to the dtypes above and checked as ``ExampleRecord``
    checks them, so a file that this writes always loads.
    """
    unknown = sorted(set(arrays) - set(ARRAYS))
    missing = [k for k in ARRAYS if k not in arrays and k not in OPTIONAL]
    if unknown or missing:
        raise DataError(f"examples: unknown arrays {unknown}, missing arrays {missing}")
    rec = ExampleRecord(**arrays)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: getattr(rec, k) for k in ARRAYS if getattr(rec, k) is not None})
    write_atomic(_file(path), buf.getvalue())
    return rec


def load_examples(path: Path | str) -> ExampleRecord:
    """Read examples.npz (the file, or a run directory holding it); DataError if it is not a valid record."""
    path = _file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS if k not in z.files and k not in OPTIONAL]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}")
            arrays = {k: z[k] for k in ARRAYS if k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read an examples record ({e})") from None
    try:
        return ExampleRecord(**arrays)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def _file(path: Path | str) -> Path:
    path = Path(path)
    return path / NAME if path.is_dir() else path
