"""The record of a run: what is in it, how it is written, how it is read.

    run_dir/
      config.json   {"config": every setting, "config_key", "environment": versions, device, threads,
                    git commit, command line}
      labels.npy    structured array, one row per training image: label (used), true_label, changed,
                    validation (in the held-out last part)
      history.csv   one row per epoch, columns rote.training.loop.EpochRecord.FIELDS, appended and
                    flushed as the run goes
      examples.npz  every training example at every presentation (rote.analysis.examples)
      scores.csv    one row per training example: the memorisation scores (rote.analysis.scores)
      detection.csv how well each score finds the changed labels (rote.analysis.detection)
      membership.npz a run on a subset (setting `subset`): one row per image of the training part, in
                    dataset order: index, in_subset (trained on), correct (the final model, eval mode, gets
                    its given label), label, true_label, changed; Feldman & Zhang's memorisation scores
                    come from these files of K runs (rote.reporting.results.memorization_rows)
      result.json   RESULT_SCHEMA: the final numbers, the outcome and the chance analysis

A store's index.csv has one row per record: key, every setting, INDEX_RESULT_FIELDS and the chance band.
Every file but history.csv is written atomically (a temporary file in the same directory, then
``os.replace``), so a reader never sees half a file, whatever kills the writer; history.csv keeps every
epoch that finished.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np

from rote.atomic import write_atomic
from rote.config import MEMORIZED_AT, RunConfig, seeds_for
from rote.training.metrics import chance_analysis

if TYPE_CHECKING:
    from rote.data.prepare import Prepared
    from rote.training.loop import TrainResult

CONFIG, LABELS, HISTORY, RESULT = "config.json", "labels.npy", "history.csv", "result.json"
EXAMPLES, SCORES_CSV, DETECTION_CSV = "examples.npz", "scores.csv", "detection.csv"
MEMBERSHIP = "membership.npz"
MEMBERSHIP_ARRAYS = ("index", "in_subset", "correct", "label", "true_label", "changed")
RESULT_SCHEMA = "rote.result/1"
# result.json's scalars in index.csv; `epochs_run` is the result's `epochs`, beside the setting `epochs` (the budget)
INDEX_RESULT_FIELDS = (
    "outcome", "epochs_run", "memorized_epoch", "seconds_to_memorize", "train_acc", "train_loss", "val_acc",
    "val_loss", "test_acc", "test_loss", "verdict", "seconds_per_epoch", "images_per_second", "train_seconds",
    "labels_changed_fraction", "parameters",
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
    """history.csv: a header, then one row per epoch, on disk as soon as it is known."""

    def __init__(self, path: Path, fields: Iterable[str]):
        self.fields = list(fields)
        self._f = open(path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(self.fields)
        self._f.flush()

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
    }


def open_record(cfg: RunConfig, data: Prepared, run_dir: Path, env: dict) -> History:
    """Start a run's record: config.json and labels.npy now, history.csv to append each epoch to."""
    from rote.training.loop import EpochRecord  # torch: only where a run trains

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
    return History(run_dir / HISTORY, EpochRecord.FIELDS)


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
    """A run's membership.npz as {name: array}; None for a run without one (not on a subset)."""
    path = Path(run_dir) / MEMBERSHIP
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in MEMBERSHIP_ARRAYS if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        return {k: z[k] for k in MEMBERSHIP_ARRAYS}


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


# -- reading ------------------------------------------------------------------------


def read_history(run_dir: Path) -> dict[str, list]:
    """history.csv as columns: {name: [float or None per epoch]}; a text column (a note) keeps its strings;
    {} for a run without one. The one reader of history.csv."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return {}
    cols: dict[str, list] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                cols.setdefault(k, []).append(_number(v))
    return cols


def _number(v):
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def read_record(run_dir: Path) -> dict:
    """{'key', 'dir', 'config', 'environment', 'result'} of a run directory; result is {} until it finishes."""
    d = Path(run_dir)
    cfg = json.loads((d / CONFIG).read_text())
    result = json.loads((d / RESULT).read_text()) if (d / RESULT).is_file() else {}
    # a record made before a setting existed ran with that setting at its default (keys leave such
    # settings out, so the record keeps its key): fill them in, so that every record names every setting
    config = {**RunConfig().to_dict(), **cfg["config"]}
    return {"key": cfg["config_key"], "dir": d, "config": config, "environment": cfg.get("environment", {}),
            "result": result}


def fit_epoch(record: dict) -> tuple[Optional[int], Optional[float]]:
    """(epoch, seconds of training) at which a run memorised its training part; (None, None) if it did not.

    From result.json; a ``--stop-at none`` run has no memorized_epoch there even
    when it ended memorised, so for such a run that evaluated its whole training
    part every epoch it is the first epoch that reached the threshold.
    """
    res = record["result"]
    if res.get("memorized_epoch") is not None:
        return int(res["memorized_epoch"]), res.get("seconds_to_memorize")
    if (res.get("outcome") != "memorized" or record["config"].get("stop_at") is not None
            or not (Path(record["dir"]) / HISTORY).is_file()):
        return None, None
    h = read_history(record["dir"])
    elapsed = 0.0
    for i, acc in enumerate(h.get("train_acc_full", [])):
        elapsed += h["seconds"][i] or 0.0
        if acc is None:
            return None, None  # not evaluated every epoch: the first epoch is unknown
        if acc >= MEMORIZED_AT:
            return int(h["epoch"][i]), elapsed
    return None, None


def index_csv(records: Iterable[dict]) -> str:
    """index.csv of a store: one row per record (as read_record gives them), for pandas."""
    cfg_fields = [f.name for f in fields(RunConfig)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", *cfg_fields, *INDEX_RESULT_FIELDS, "chance_low", "chance_high", "chance_histogram"])
    for r in records:
        res, chance = r["result"], r["result"].get("chance", {})
        low, high = chance.get("band") or [None, None]
        w.writerow([_cell(v) for v in (
            r["key"], *[r["config"].get(f) for f in cfg_fields],
            *[res.get("epochs" if f == "epochs_run" else f) for f in INDEX_RESULT_FIELDS],
            low, high, chance.get("histogram"))])
    return buf.getvalue()
