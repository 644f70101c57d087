"""The record of a run: what is in it, how it is written, how it is read.

    run_dir/
      config.json   {"config": every setting, "config_key", "environment": versions, device, threads,
                    git commit (git_commit, 40 hex) and git_dirty (tracked files changed), command line}
      labels.npy    structured array, one row per training image: label (used), true_label, changed,
                    validation (in the held-out last part)
      history.csv   one row per epoch, columns rote.training.records.EpochRecord.FIELDS, appended and
                    flushed as the run goes
      examples.npz  every training example at every presentation (rote.analysis.examples)
      scores.csv    one row per training example: the memorisation scores (rote.analysis.scores)
      detection.csv how well each score finds the changed labels (rote.analysis.detection)
      membership.npz a run on a subset (setting `subset`): one row per image of the training part, in
                    dataset order: index, in_subset (trained on), correct (the final model, eval mode, gets
                    its given label), label, true_label, changed; Feldman & Zhang's memorisation scores
                    come from these files of K runs (rote.reporting.results.memorization_rows)
      result.json   RESULT_SCHEMA: the final numbers, the outcome (OUTCOMES) and the chance analysis; each
                    field's type and range are RESULT_FIELDS
      model.pt      with --save-model: the final weights (torch.save of the model's state_dict)
      checkpoint.pt only while the run is unfinished: where it resumes from (rote.training.checkpoint)

A store's index.csv has one row per record: key, every setting, INDEX_RESULT_FIELDS and the chance band.
Every file but history.csv is written atomically (a temporary file in the same directory, then
``os.replace``), so a reader never sees half a file, whatever kills the writer; history.csv keeps every
epoch that finished.

Everything that reads a run directory reads it here: ``read_record`` gives a ``Record`` (settings,
environment, result, a history read on first use), and ``check_run_dir`` says whether a record can be
trusted.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np

from rote.atomic import write_atomic
from rote.analysis.examples import NAME as EXAMPLES
from rote.config import RunConfig, fit_threshold, reached, seeds_for
from rote.errors import RoteError
from rote.training.metrics import chance_analysis

if TYPE_CHECKING:
    from rote.data.prepare import Prepared
    from rote.training.records import TrainResult

CONFIG, LABELS, HISTORY, RESULT = "config.json", "labels.npy", "history.csv", "result.json"
SCORES_CSV, DETECTION_CSV = "scores.csv", "detection.csv"  # EXAMPLES: rote.analysis.examples, which writes it
MEMBERSHIP = "membership.npz"
# while a run trains: its checkpoint (rote.training.checkpoint), removed when the record is complete;
# with --save-model: the final weights (a state_dict for the model the settings name)
CHECKPOINT, MODEL = "checkpoint.pt", "model.pt"
MEMBERSHIP_ARRAYS = ("index", "in_subset", "correct", "label", "true_label", "changed")
RESULT_SCHEMA = "rote.result/1"
# result.json's scalars in index.csv; `epochs_run` is the result's `epochs`, beside the setting `epochs` (the budget)
INDEX_RESULT_FIELDS = (
    "outcome", "epochs_run", "memorized_epoch", "seconds_to_memorize", "train_acc", "train_loss", "val_acc",
    "val_loss", "test_acc", "test_loss", "verdict", "seconds_per_epoch", "images_per_second", "train_seconds",
    "labels_changed_fraction", "parameters", "memorized_bits", "bits_per_parameter",
)


# -- writing ------------------------------------------------------------------------


def _jsonable(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None  # JSON has no NaN; null reads back as NaN in pandas
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(_jsonable(obj), indent=2) + "\n").encode())


DIST_NAME = "rote-memorization"  # the distribution's name (pyproject.toml); the import name is rote


def git_state() -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of rote's own checkout, if rote runs from one; (None, None) for an installed copy.

    dirty: tracked files differ from the commit, so the commit alone does not say what ran. An installed
    rote may sit inside someone else's repository (a virtualenv in a project): that repository's commit
    says nothing about rote, so the toplevel must be the directory above the package and hold rote's own
    pyproject.toml.
    """
    package = Path(__file__).resolve().parents[1]  # rote/, above experiments/
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=package, capture_output=True, text=True,
                             timeout=5)
        root = Path(top.stdout.strip())
        pyproject = root / "pyproject.toml"
        if top.returncode != 0 or root.resolve() != package.parent or not pyproject.is_file() or not re.search(
                rf'^name\s*=\s*"{DIST_NAME}"', pyproject.read_text(), re.M):
            return None, None
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None, None
    commit = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", commit):
        return None, None
    return commit, (bool(dirty.stdout.strip()) if dirty.returncode == 0 else None)


def git_commit() -> Optional[str]:
    """The 40-hex commit of rote's own checkout; None for an installed copy (see git_state)."""
    return git_state()[0]


def environment(device, dataset=None) -> dict:
    import torch

    import rote

    env = {"rote": rote.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
           "threads": torch.get_num_threads(), "command": sys.argv}
    env["git_commit"], env["git_dirty"] = git_state()
    if getattr(dataset, "sha256", None):  # a user's .npz: the setting names the path, this the bytes
        env["dataset_sha256"] = dataset.sha256
    if getattr(device, "type", None) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class History:
    """history.csv: a header, then one row per epoch, on disk as soon as it is known.

    ``rows``: the epochs already trained (a run resumed from its checkpoint), written first.
    """

    def __init__(self, path: Path, fields: Iterable[str], rows: Iterable = ()):
        self.fields = list(fields)
        self._f = open(path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(self.fields)
        for rec in rows:
            self._w.writerow([_cell(getattr(rec, k, None)) for k in self.fields])
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, rec) -> None:
        """One epoch: any object with the columns as attributes (an EpochRecord)."""
        self._w.writerow([_cell(getattr(rec, k, None)) for k in self.fields])
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _cell(v):
    if v is None:
        return ""
    return ("nan" if not math.isfinite(v) else repr(v)) if isinstance(v, float) else v


def result_dict(cfg: RunConfig, data: Prepared, res: TrainResult) -> dict:
    """result.json's content (schema RESULT_SCHEMA)."""
    chance = chance_analysis(res.test_pred, data.y_test, data.classes, seed=seeds_for(cfg.seed)["chance"],
                             accuracy=res.test_acc)
    return {
        "schema": RESULT_SCHEMA, "config_key": cfg.key(), "outcome": res.outcome, "message": res.message,
        "epochs": res.epochs, "memorized_epoch": res.memorized_epoch, "seconds_to_memorize": res.seconds_to_memorize,
        "train_loss": res.train_loss, "train_acc": res.train_acc, "val_loss": res.val_loss, "val_acc": res.val_acc,
        "test_loss": res.test_loss, "test_acc": res.test_acc,
        "chance": {k: chance[k] for k in ("uniform", "histogram", "band", "band_method")},
        "verdict": chance["verdict"], "seconds_per_epoch": res.seconds_per_epoch,
        "images_per_second": res.images_per_second, "train_seconds": res.train_seconds,
        "n_fit": len(data.y_fit), "n_val": len(data.y_val), "n_out": len(data.out_index),
        "labels_changed": int(data.changed.sum()),
        "labels_changed_fraction": data.changed_fraction, "parameters": res.parameters,
        **bits_fields(cfg, data, res),
    }


def bits_fields(cfg: RunConfig, data: Prepared, res: TrainResult) -> dict:
    """result.json's memorised bits (rote.analysis.capacity): total, per parameter, what they are out of,
    how many examples were scored and which (all, or only the changed labels); nulls where undefined."""
    from rote.analysis.capacity import memorised_bits
    from rote.data.corruption import parse_label_corruption

    m = None
    if res.fit_loss is not None and len(res.fit_loss) == len(data.y_fit):
        m = memorised_bits(parse_label_corruption(cfg.labels).kind, res.fit_loss, data.y_fit,
                           data.changed[data.fit_index], data.classes)
    if m is None:
        return {"memorized_bits": None, "bits_per_parameter": None, "memorized_bits_of": None,
                "memorized_bits_scored": None, "memorized_bits_scope": None}
    return {"memorized_bits": m.bits, "bits_per_parameter": m.bits / res.parameters if res.parameters else None,
            "memorized_bits_of": m.reference_bits, "memorized_bits_scored": m.scored,
            "memorized_bits_scope": m.scope}


# errors of a write that the user fixes by freeing space or choosing another place, not bugs
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def make_run_dir(run_dir: Path) -> None:
    """Make an empty run directory, or say in one line (a RoteError) why it cannot be made here."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RoteError(f"output {run_dir} is a file, not a directory; choose another --out")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise RoteError(f"output directory {run_dir} already exists and is not empty; choose another --out")
    existing = run_dir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise RoteError(f"cannot make {run_dir}: {existing} is a file, not a directory; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RoteError(f"cannot make {run_dir}: {existing} is not writable; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RoteError(f"cannot make {run_dir}: {e.strerror}; choose another --out") from None


def write_failed(e: OSError, where: Path, kept: str) -> Optional[RoteError]:
    """The one line for a write that failed for want of space or permission (None for any other error):
    where it was writing, what stays as it was (``kept``), what to do."""
    if e.errno in DISK_FULL:
        return RoteError(f"no space left on the device writing {where}; {kept}; free space on that disk (old run "
                         f"directories, a store's quarantine/) and run the same command again")
    if e.errno in NOT_WRITABLE:
        return RoteError(f"cannot write {e.filename or where} ({e.strerror}); {kept}; choose a writable --out")
    return None


def open_record(cfg: RunConfig, data: Prepared, run_dir: Path, env: dict, history: Iterable = ()) -> History:
    """Start a run's record: config.json and labels.npy now, history.csv to append each epoch to
    (beginning with ``history``, the epochs a resumed run has already trained)."""
    from rote.training.records import EpochRecord

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, {"config": cfg.to_dict(), "config_key": cfg.key(), "environment": env})
    labels = np.zeros(len(data.labels), dtype=[("label", "i8"), ("true_label", "i8"), ("changed", "?"),
                                               ("validation", "?")])
    labels["label"], labels["true_label"], labels["changed"] = data.labels, data.true_labels, data.changed
    labels["validation"][data.n_part:] = True
    buf = io.BytesIO()
    np.save(buf, labels, allow_pickle=False)
    write_atomic(run_dir / LABELS, buf.getvalue())
    return History(run_dir / HISTORY, EpochRecord.FIELDS, history)


def write_examples(data: "Prepared", examples: dict, run_dir: Path) -> None:
    """examples.npz, and from it scores.csv (one row per training example) and detection.csv
    (how well each score finds the labels this run changed)."""
    from rote.analysis.detection import detection_table, write_detection_csv
    from rote.analysis.examples import save_examples
    from rote.analysis.scores import example_scores, write_scores_csv

    rec = save_examples(Path(run_dir) / EXAMPLES, **examples, index=data.fit_index, label=data.y_fit,
                        true_label=data.true_labels[data.fit_index], changed=data.changed[data.fit_index])
    if rec.epochs:
        scores = example_scores(rec)
        write_scores_csv(Path(run_dir) / SCORES_CSV, rec, scores)
        write_detection_csv(Path(run_dir) / DETECTION_CSV, detection_table(scores, rec.changed))


def membership_arrays(data: "Prepared", fit_pred: np.ndarray, out_pred: np.ndarray) -> dict[str, np.ndarray]:
    """membership.npz's arrays (MEMBERSHIP_ARRAYS), one row per image of the training part in dataset
    order, from the final model's predictions on the fit rows and on the held-out rows."""
    n = data.n_part
    in_subset, pred = np.zeros(n, dtype=bool), np.empty(n, dtype=np.int64)
    in_subset[data.fit_index] = True
    pred[data.fit_index], pred[data.out_index] = fit_pred, out_pred
    label = np.asarray(data.labels[:n], dtype=np.int64)
    return {"index": np.arange(n, dtype=np.int64), "in_subset": in_subset, "correct": pred == label,
            "label": label, "true_label": np.asarray(data.true_labels[:n], dtype=np.int64),
            "changed": np.asarray(data.changed[:n], dtype=bool)}


def write_membership(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: arrays[k] for k in MEMBERSHIP_ARRAYS})
    write_atomic(Path(path), buf.getvalue())


def read_membership(run_dir: Path) -> Optional[dict[str, np.ndarray]]:
    """A run's membership.npz as {name: array}; None for a run without one (not on a subset).
    RecordError for one that does not parse."""
    path = Path(run_dir) / MEMBERSHIP
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in MEMBERSHIP_ARRAYS if k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as e:
        raise RecordError(f"{path}: does not parse ({type(e).__name__})") from None
    missing = [k for k in MEMBERSHIP_ARRAYS if k not in arrays]
    if missing:
        raise RecordError(f"{path}: missing arrays {missing}")
    return arrays


def close_record(cfg: RunConfig, data: Prepared, res: TrainResult, run_dir: Path) -> dict:
    """Finish a run's record: the per-example files, then result.json (its presence marks the record
    complete); returns the result."""
    if res.examples is not None:
        write_examples(data, res.examples, run_dir)
    if res.fit_pred is not None:
        write_membership(Path(run_dir) / MEMBERSHIP, membership_arrays(data, res.fit_pred, res.out_pred))
    result = result_dict(cfg, data, res)
    write_json(Path(run_dir) / RESULT, result)
    return result


# -- reading: the one reader of a run directory ------------------------------------
#
# Everything that reads a run directory (the store's check, tables, figures, the report, the API, the
# time estimate) reads it here, through ``read_record`` and ``Record``. A record is trusted only if every
# file parses within the bounds below and every field of result.json has the type and range RESULT_FIELDS
# says (``check_run_dir``); the store sets anything else aside.

# the outcome of a run, as result.json spells it ("memorized" keeps the American spelling in files)
MEMORIZED, COLLAPSED, BUDGET_SPENT, DIVERGED = "memorized", "collapsed", "budget-spent", "diverged"
OUTCOMES = (MEMORIZED, COLLAPSED, BUDGET_SPENT, DIVERGED)
# outcomes as older records spell them; read as today's
OLD_OUTCOMES = {"unfinished": BUDGET_SPENT}
VERDICTS = ("below", "within", "above")

# bounds on what a record's files may hold: far above anything a run writes (a 1,000-epoch history is
# about 200 KB, config.json a few KB), far below what would hang or exhaust a reader
MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 16  # result.json nests 3 deep (chance -> band), config.json 3 (environment -> command)
MAX_HISTORY_BYTES = 64 << 20
MAX_CSV_FIELD = 4096  # one cell: a number, or the dead layer in words (csv itself stops at 128 KiB, an error)
MAX_LABELS_BYTES = 256 << 20

FILES = (CONFIG, LABELS, HISTORY, EXAMPLES, SCORES_CSV, DETECTION_CSV, MEMBERSHIP, RESULT)  # in the layout's order
REQUIRED = (CONFIG, HISTORY, LABELS, RESULT)  # a finished record has at least these
HISTORY_TEXT_COLUMNS = {"dead_layer"}  # history.csv's one column of words (rote.training.loop.EpochRecord)


class RecordError(RoteError):
    """A run directory's file that cannot be trusted: its message says which and why, in a few words."""


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(lo=None, hi=None, *, integer=False, null=True, required=False):
    """A check of one result field: (required, test(value) -> why not, or None)."""
    def test(v):
        if v is None:
            return None if null else "is null"
        if integer and not (isinstance(v, int) and not isinstance(v, bool)):
            return "is not a whole number"
        if not _finite(v):
            return "is not a finite number"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"is out of range [{lo}, {hi}]"
        return None
    return required, test


def _text(choices=None, *, required=False, null=False):
    def test(v):
        if v is None and null:
            return None
        if not isinstance(v, str) or len(v) > 4096:
            return "is not a short string"
        if choices is not None and v not in choices:
            return f"is not one of {', '.join(choices)}"
        return None
    return required, test


def _chance(v):
    if not isinstance(v, dict):
        return "is not a mapping"
    for k in ("uniform", "histogram"):
        why = _number(0, 1, null=k == "histogram")[1](v.get(k))
        if why or (k == "uniform" and not v.get(k)):
            return f"{k} {why or 'is 0'}"
    band = v.get("band")
    if not (isinstance(band, list) and len(band) == 2 and all(_finite(b) and 0 <= b <= 1 for b in band)
            and band[0] <= band[1]):
        return "band is not two accuracies, low then high"
    return _text(null=True)[1](v.get("band_method"))


_ACC, _LOSS, _SECONDS, _COUNT = _number(0, 1), _number(0), _number(0), _number(0, integer=True)
# result.json's fields (schema RESULT_SCHEMA): name -> (required, test). Fields a record may lack were
# added after the first records; where present they must still pass.
RESULT_FIELDS = {
    "schema": _text(),
    "config_key": _text(required=True),
    "outcome": _text(OUTCOMES + tuple(OLD_OUTCOMES), required=True),
    "message": _text(),
    "epochs": _number(0, integer=True, null=False, required=True),
    "memorized_epoch": _number(1, integer=True),
    "seconds_to_memorize": _SECONDS,
    "train_loss": _LOSS, "train_acc": _number(0, 1, null=False, required=True),
    "val_loss": _LOSS, "val_acc": _ACC,
    "test_loss": _LOSS, "test_acc": _number(0, 1, null=False, required=True),
    "chance": (True, _chance),
    "verdict": _text(VERDICTS, required=True),
    "seconds_per_epoch": _SECONDS, "images_per_second": _SECONDS, "train_seconds": _SECONDS,
    "n_fit": _COUNT, "n_val": _COUNT, "n_out": _COUNT, "labels_changed": _COUNT,
    "labels_changed_fraction": _ACC, "parameters": _COUNT,
    # memorised bits (records made before them have none): a model worse than the label code is negative
    "memorized_bits": _number(), "bits_per_parameter": _number(), "memorized_bits_of": _number(0),
    "memorized_bits_scored": _COUNT, "memorized_bits_scope": _text(("all", "changed"), null=True),
}


def check_result(result) -> Optional[str]:
    """Why result.json's content breaks its schema (RESULT_FIELDS), or None if it keeps it."""
    if not isinstance(result, dict):
        return "is not a mapping"
    for name, (required, test) in RESULT_FIELDS.items():
        if name not in result:
            if required:
                return f"has no {name}"
            continue
        why = test(result[name])
        if why:
            return f"field {name} {why}"
    return None


def _depth(obj) -> int:
    """How deeply lists and mappings nest in obj, without recursion."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        o, d = todo.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_JSON_DEPTH:
                todo.extend((x, d + 1) for x in (o.values() if isinstance(o, dict) else o))
    return deepest


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; rote never writes them


def read_json(path: Path):
    """A record's JSON file, within MAX_JSON_BYTES and MAX_JSON_DEPTH; RecordError otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise RecordError(f"{path.name} cannot be read ({e.strerror})") from None
    if len(blob) > MAX_JSON_BYTES:
        raise RecordError(f"{path.name} is larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        obj = json.loads(blob.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RecordError(f"{path.name} does not parse ({type(e).__name__})") from None
    if _depth(obj) > MAX_JSON_DEPTH:
        raise RecordError(f"{path.name} nests deeper than {MAX_JSON_DEPTH} levels")
    return obj


def _read_csv_rows(path: Path, max_bytes: int) -> list[list[str]]:
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise RecordError(f"{path.name} is larger than {max_bytes >> 20} MiB")
        with open(path, encoding="utf-8", newline="") as f:
            rows = []
            for row in csv.reader(f):
                if any(len(c) > MAX_CSV_FIELD for c in row):
                    raise RecordError(f"{path.name} has a field longer than {MAX_CSV_FIELD} characters")
                rows.append(row)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RecordError(f"{path.name} does not parse ({type(e).__name__})") from None


def read_history_rows(path: Path) -> list[list[str]]:
    """history.csv's rows, header first, checked: an epoch column, one width, numbers in number columns."""
    rows = _read_csv_rows(path, MAX_HISTORY_BYTES)
    if not rows or "epoch" not in rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise RecordError(f"{HISTORY} is empty, ragged or has no epoch column")
    numeric = [i for i, name in enumerate(rows[0]) if name not in HISTORY_TEXT_COLUMNS]
    for r in rows[1:]:
        for i in numeric:
            if r[i] != "":
                try:
                    float(r[i])
                except ValueError:
                    raise RecordError(f"{HISTORY} has a word where a number belongs (column {rows[0][i][:40]})") \
                        from None
    return rows


def read_history(run_dir: Path) -> dict[str, list]:
    """history.csv as columns: {name: [float or None per epoch]}; a text column (a note) keeps its strings;
    {} for a run without one or with one that does not parse. The one reader of history.csv."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return {}
    try:
        rows = read_history_rows(path)
    except RecordError:
        return {}
    cols: dict[str, list] = {name: [] for name in rows[0]}
    for row in rows[1:]:
        for name, v in zip(rows[0], row):
            cols[name].append(_cell_value(v))
    return cols


def history_frame(run_dir: Path):
    """history.csv as a pandas DataFrame (read_history's columns, epochs as integers); needs pandas."""
    import pandas as pd

    frame = pd.DataFrame(read_history(run_dir))
    for name in frame.columns:
        if name not in HISTORY_TEXT_COLUMNS:  # an empty cell is NaN, as pandas reads a CSV
            frame[name] = frame[name].astype("int64" if name == "epoch" else "float64")
    return frame


def _cell_value(v):
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def _check_labels(path: Path) -> None:
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise RecordError(f"{LABELS} is larger than {MAX_LABELS_BYTES >> 20} MiB")
        labels = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RecordError(f"{LABELS} does not parse ({type(e).__name__})") from None
    if labels.dtype.names is None or "label" not in labels.dtype.names or labels.ndim != 1:
        raise RecordError(f"{LABELS} has no labels")


def _check_optional(d: Path) -> None:
    """The files a run may have written beside the required ones parse, where they are there."""
    read_membership(d)
    for name in (SCORES_CSV, DETECTION_CSV):
        if (d / name).is_file():
            rows = _read_csv_rows(d / name, MAX_LABELS_BYTES)
            if not rows or any(len(r) != len(rows[0]) for r in rows):
                raise RecordError(f"{name} is empty or ragged")
    if (d / DETECTION_CSV).is_file() and len(read_detection(d)) == 0 and \
            len((d / DETECTION_CSV).read_bytes().splitlines()) > 1:
        raise RecordError(f"{DETECTION_CSV} does not parse")
    if (d / EXAMPLES).is_file():
        try:
            with np.load(d / EXAMPLES, allow_pickle=False) as z:
                z.files  # the zip's directory: enough to know the file is an archive of arrays
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as e:
            raise RecordError(f"{EXAMPLES} does not parse ({type(e).__name__})") from None


def _config_part(cfg) -> tuple[dict, str, dict]:
    """(settings, key, environment) of config.json's content; RecordError if it is not shaped so."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict):
        raise RecordError(f"{CONFIG} has no settings")
    if not isinstance(cfg.get("config_key"), str):
        raise RecordError(f"{CONFIG} has no key")
    env = cfg.get("environment", {})
    if not isinstance(env, dict):
        raise RecordError(f"{CONFIG}'s environment is not a mapping")
    return cfg["config"], cfg["config_key"], env


def check_run_dir(d: Path, key: Optional[str] = None) -> Optional[str]:
    """Why the finished record in ``d`` cannot be trusted, or None if it can.

    ``key``: the key it must have (default: the directory's name). Its files must be there and parse within
    bounds, result.json must keep its schema, and the directory's name, config.json's key, the key recomputed
    from its settings and result.json's key must agree.
    """
    d = Path(d)
    key = key or d.name
    for name in REQUIRED:
        if not (d / name).is_file():
            return f"{name} is missing"
    try:
        settings, cfg_key, _ = _config_part(read_json(d / CONFIG))
        result = read_json(d / RESULT)
        why = check_result(result)
        if why:
            return f"{RESULT} {why}"[:200]
        try:
            real = RunConfig.from_dict(settings).key()
        except (RoteError, TypeError, AttributeError, ValueError, RecursionError) as e:
            return f"its settings are not valid ({e})"[:200]
        keys = {"directory": key, "config.json": cfg_key, "settings": real, "result.json": result["config_key"]}
        if len(set(keys.values())) != 1:
            return ("keys disagree: " + ", ".join(f"{k} {str(v)[:20]}" for k, v in keys.items()))[:200]
        read_history_rows(d / HISTORY)
        _check_labels(d / LABELS)
        _check_optional(d)
    except RecordError as e:
        return str(e)[:200]
    return None


@dataclass
class Record:
    """One run's record, as read from its directory: settings, environment, result, a lazily read history.

    ``result`` is result.json ({} until the run finishes), its outcome spelt as today; read fields through
    the properties, which say None where a value is missing. A record also reads as the mapping older code
    used (``record["result"]``, ``{**record}``).
    """

    key: str
    dir: Path
    config: dict  # every setting, those a record predates at their defaults
    environment: dict
    result: dict
    _history: Optional[dict] = field(default=None, repr=False, compare=False)

    # -- the mapping older code reads --------------------------------------------------
    _KEYS = ("key", "dir", "config", "environment", "result")

    def __getitem__(self, name: str):
        if name not in self._KEYS:
            raise KeyError(name)
        return getattr(self, name)

    def keys(self):
        return self._KEYS

    def get(self, name: str, default=None):
        return getattr(self, name) if name in self._KEYS else default

    # -- settings -----------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def threshold(self) -> float:
        """The accuracy on the full training part that counts as memorised for this run."""
        return fit_threshold(self.config.get("stop_at"))

    def settings(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    # -- result -------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return bool(self.result)

    @property
    def outcome(self) -> Optional[str]:
        return self.result.get("outcome")

    @property
    def memorized(self) -> bool:
        """Did the run memorise its training part (reach its threshold on a full pass)?"""
        return self.outcome == MEMORIZED

    @property
    def epochs_run(self) -> Optional[int]:
        return self.result.get("epochs")

    @property
    def epochs_or_budget(self) -> int:
        """The epochs it ran, or its budget until it finishes."""
        return int(self.epochs_run or self.config["epochs"])

    def value(self, name: str) -> Optional[float]:
        """A numeric field of result.json (train_acc, test_acc, test_loss ...); None where absent or null."""
        v = self.result.get(name)
        return float(v) if _finite(v) else None

    @property
    def train_acc(self) -> Optional[float]:
        return self.value("train_acc")

    @property
    def test_acc(self) -> Optional[float]:
        return self.value("test_acc")

    @property
    def chance(self) -> dict:
        return self.result.get("chance") or {}

    @property
    def chance_band(self) -> tuple[Optional[float], Optional[float]]:
        band = self.chance.get("band") or [None, None]
        return band[0], band[1]

    @property
    def chance_uniform(self) -> Optional[float]:
        return self.chance.get("uniform")

    # -- files ----------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return Path(self.dir) / name

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    @property
    def history(self) -> dict[str, list]:
        """history.csv as columns (read_history), read on first use."""
        if self._history is None:
            self._history = read_history(self.dir)
        return self._history

    def membership(self) -> Optional[dict[str, np.ndarray]]:
        return read_membership(self.dir)

    def detection(self) -> list[dict]:
        return read_detection(self.dir)

    def fit_epoch(self) -> tuple[Optional[int], Optional[float]]:
        return fit_epoch(self)


def _outcome_as_today(result: dict) -> dict:
    o = result.get("outcome")
    return {**result, "outcome": OLD_OUTCOMES[o]} if isinstance(o, str) and o in OLD_OUTCOMES else result


def read_record(run_dir: Path) -> Record:
    """The record of a run directory; its result is {} until it finishes. RecordError for a config.json
    that is missing or damaged; a result.json that breaks its schema reads as none (the store's check
    names it)."""
    d = Path(run_dir)
    try:
        settings, key, env = _config_part(read_json(d / CONFIG))
    except RecordError as e:
        raise RecordError(f"run directory {d} cannot be read: {e}") from None
    result = {}
    if (d / RESULT).is_file():
        try:
            result = read_json(d / RESULT)
        except RecordError:
            result = {}
        result = _outcome_as_today(result) if check_result(result) is None else {}
    # a record made before a setting existed ran with that setting at its default (keys leave such
    # settings out, so the record keeps its key): fill them in, so that every record names every setting
    config = {**RunConfig().to_dict(), **settings}
    if result and "memorized_bits" not in result:
        result = {**result, **_bits_from_mean_loss(result, config, d)}
    return Record(key=key, dir=d, config=config, environment=env, result=result)


def _bits_from_mean_loss(result: dict, config: dict, run_dir: Path) -> dict:
    """The memorised bits of a record made before result.json kept them, where its numbers suffice.

    For labels that are all random (random, permute) on the whole training part, the bits need only the
    mean exact cross-entropy over the training part at the end (result.json's train_loss) and the given
    labels' marginal (labels.npy). Keras 1's clipped loss differs from the exact one only where a
    probability is below 1e-7; such records are left without bits rather than approximated."""
    from rote.analysis.capacity import bits_from_mean_loss, label_entropy_bits

    kind = str(config.get("labels", "")).split(":")[0]
    loss, n_fit, params = result.get("train_loss"), result.get("n_fit"), result.get("parameters")
    if (kind not in ("random", "permute") or config.get("loss") != "ce" or config.get("subset") is not None
            or not _finite(loss) or not isinstance(n_fit, int) or n_fit < 1):
        return {}
    if kind == "random":
        h = math.log2(10) if config.get("dataset") in ("mnist", "fashion-mnist", "cifar10") else None
    else:
        try:
            arr = np.load(run_dir / LABELS, allow_pickle=False)
            given = np.asarray(arr["label"])[~np.asarray(arr["validation"], dtype=bool)]
        except (OSError, ValueError, KeyError, IndexError):
            return {}
        h = label_entropy_bits(given, int(given.max()) + 1) if len(given) == n_fit else None
    if h is None:
        return {}
    bits = bits_from_mean_loss(n_fit, float(loss), h)
    return {"memorized_bits": bits, "bits_per_parameter": bits / params if isinstance(params, int) and params else
            None, "memorized_bits_of": n_fit * h, "memorized_bits_scored": n_fit, "memorized_bits_scope": "all"}


def read_detection(run_dir: Path) -> list[dict]:
    """A run's detection.csv as rows {score, direction, auroc, precision_at_k, k, n}; [] if it has none
    (runs recorded with record_examples false) or one that does not parse."""
    path = Path(run_dir) / DETECTION_CSV
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{"score": r["score"], "direction": int(r["direction"]), "auroc": float(r["auroc"]),
                     "precision_at_k": float(r["precision_at_k"]), "k": int(r["k"]), "n": int(r["n"])}
                    for r in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
        return []


def fit_epoch(record) -> tuple[Optional[int], Optional[float]]:
    """(epoch, seconds of training) at which a run memorised its training part; (None, None) if it did not.

    ``record``: a Record (or the mapping of one). From result.json; a ``--stop-at none`` run has no
    memorized_epoch there even when it ended memorised, so for such a run that evaluated its whole
    training part every epoch it is the first epoch that reached the threshold.
    """
    res = record["result"]
    if res.get("memorized_epoch") is not None:
        return int(res["memorized_epoch"]), res.get("seconds_to_memorize")
    if (res.get("outcome") != MEMORIZED or record["config"].get("stop_at") is not None
            or not (Path(record["dir"]) / HISTORY).is_file()):
        return None, None
    h = record.history if isinstance(record, Record) else read_history(record["dir"])
    elapsed = 0.0
    for i, acc in enumerate(h.get("train_acc_full", [])):
        elapsed += h["seconds"][i] or 0.0
        if acc is None:
            return None, None  # not evaluated every epoch: the first epoch is unknown
        if reached(acc, None):
            return int(h["epoch"][i]), elapsed
    return None, None


def label_columns(labels) -> tuple:
    """(kind, P) of a label corruption as numbers a DataFrame can filter on: 'partial:0.4' -> ('partial', 0.4);
    true labels have P = 0, random and permuted labels P = 1; (None, None) if it cannot be read."""
    from rote.data.corruption import parse_label_corruption

    try:
        c = parse_label_corruption(str(labels))
    except RoteError:
        return None, None
    return c.kind, {"true": 0.0, "random": 1.0, "permute": 1.0}.get(c.kind, c.p)


def index_csv(records: Iterable[Record]) -> str:
    """index.csv of a store: one row per record (as read_record gives them), for pandas."""
    cfg_fields = [f.name for f in fields(RunConfig)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", *cfg_fields, "label_kind", "label_p", *INDEX_RESULT_FIELDS, "chance_low", "chance_high",
                "chance_histogram"])
    for r in records:
        res, chance = r["result"], r["result"].get("chance", {})
        low, high = chance.get("band") or [None, None]
        w.writerow([_cell(v) for v in (
            r["key"], *[r["config"].get(f) for f in cfg_fields], *label_columns(r["config"].get("labels")),
            *[res.get("epochs" if f == "epochs_run" else f) for f in INDEX_RESULT_FIELDS],
            low, high, chance.get("histogram"))])
    return buf.getvalue()
