"""The result store of a sweep: one directory, one record per run, an index for pandas.

    SWEEP_DIR/
      sweep.yaml        the sweep file as it was run
      runs/<key>/       one record per finished run, named by the hash of its
                        full config: config.json, history.csv, labels.npy,
                        result.json (the layout of a `rote run` directory)
      index.csv         one row per finished run: key, every setting, every
                        scalar result (the result's `epochs` is `epochs_run`,
                        beside the setting `epochs`, the budget);
                        `pandas.read_csv(SWEEP_DIR/"index.csv")`

A run is trained in ``runs/.tmp-<key>-<pid>/`` and renamed to ``runs/<key>/``
only when its record is complete: the rename is atomic, so a record is either
all there or not there, whatever kills the process (SIGKILL included). A
rerun skips every key that has a record and discards stale temporary
directories. A run whose settings differ in any field has another key, so a
result is never reused for other settings.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Iterator

from rote.config import RunConfig
from rote.atomic import write_atomic

INDEX_RESULT_FIELDS = (
    "outcome", "epochs_run", "memorized_epoch", "seconds_to_memorize", "train_acc", "train_loss", "val_acc",
    "val_loss", "test_acc", "test_loss", "verdict", "seconds_per_epoch", "images_per_second", "train_seconds",
    "labels_changed_fraction", "parameters",
)


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def create(self) -> "Store":
        self.runs.mkdir(parents=True, exist_ok=True)
        return self

    def record_dir(self, key: str) -> Path:
        return self.runs / key

    def temp_dir(self, key: str) -> Path:
        return self.runs / f".tmp-{key}-{os.getpid()}"

    def done(self, key: str) -> bool:
        return (self.record_dir(key) / "result.json").is_file()

    def done_keys(self) -> set[str]:
        if not self.runs.is_dir():
            return set()
        return {p.name for p in self.runs.iterdir() if not p.name.startswith(".") and (p / "result.json").is_file()}

    def clean_stale(self) -> int:
        """Remove temporary directories left by runs that were killed. Call with no worker running."""
        n = 0
        if self.runs.is_dir():
            for p in self.runs.iterdir():
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p, ignore_errors=True)
                    n += 1
        return n

    def commit(self, key: str, tmp: Path) -> Path:
        """Publish a complete record: one atomic rename. If another worker won the race, keep theirs."""
        final = self.record_dir(key)
        try:
            os.rename(tmp, final)
        except OSError:
            if self.done(key):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        return final

    def records(self) -> Iterator[dict]:
        """Every finished run: {'key', 'dir', 'config', 'result', 'environment'}, in key order."""
        for key in sorted(self.done_keys()):
            d = self.record_dir(key)
            cfg = json.loads((d / "config.json").read_text())
            yield {"key": key, "dir": d, "config": cfg["config"], "environment": cfg.get("environment", {}),
                   "result": json.loads((d / "result.json").read_text())}

    def write_index(self) -> Path:
        """Rewrite index.csv from the records (atomically); the records are the truth, the index a view."""
        cfg_fields = [f.name for f in fields(RunConfig)]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["key", *cfg_fields, *INDEX_RESULT_FIELDS, "chance_low", "chance_high", "chance_histogram"])
        for r in self.records():
            res = r["result"]
            chance = res.get("chance", {})
            band = chance.get("band") or [None, None]
            w.writerow([r["key"], *[_cell(r["config"].get(f)) for f in cfg_fields],
                        *[_cell(res.get("epochs" if f == "epochs_run" else f)) for f in INDEX_RESULT_FIELDS], _cell(band[0]), _cell(band[1]),
                        _cell(chance.get("histogram"))])
        path = self.root / "index.csv"
        write_atomic(path, buf.getvalue().encode())
        return path


def _cell(v):
    if v is None:
        return ""
    return v
