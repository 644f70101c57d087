"""The result store of a sweep: one directory, one record per run, an index for pandas.

    SWEEP_DIR/
      sweep.yaml        the sweep file as last run (an earlier, different one is kept as sweep.<time>.yaml)
      runs/<key>/       one record per finished run, named by the hash of its full config: the layout of a
                        `rote run` directory (rote.experiments.record)
      failed/<key>.json the error of a run that failed, until a rerun finishes it
      index.csv         one row per finished run (record.index_csv); `pandas.read_csv(SWEEP_DIR/"index.csv")`

A record is written in ``runs/.tmp-<key>-<pid>/`` (by the run itself, or by the
driver from the files a Ray worker sends back) and renamed to ``runs/<key>/``
only when complete: the rename is atomic, so a record is either all there or
not there, whatever kills the process (SIGKILL included). A rerun skips every
key that has a record and discards stale temporary directories. A run whose
settings differ in any field has another key, so a result is never reused for
other settings.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator, Optional

from rote.atomic import write_atomic
from rote.experiments.record import RESULT, index_csv, read_record, write_json


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
        return (self.record_dir(key) / RESULT).is_file()

    def done_keys(self) -> set[str]:
        return {p.parent.name for p in self.runs.glob(f"*/{RESULT}") if not p.parent.name.startswith(".")}

    def clean_stale(self) -> int:
        """Remove temporary directories left by runs that were killed. Call with no worker running."""
        stale = list(self.runs.glob(".tmp-*"))
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return len(stale)

    def commit(self, key: str, tmp: Path) -> Path:
        """Publish a complete record: one atomic rename. If another worker won the race, keep theirs."""
        final = self.record_dir(key)
        try:
            os.rename(tmp, final)
        except OSError:
            if not self.done(key):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def land(self, out: dict, tmp: Optional[Path] = None) -> None:
        """Put one run's outcome in the store: a finished record, or its error in failed/<key>.json.

        A finished record is the directory ``tmp`` or, from a remote worker, the files in ``out['files']``.
        """
        key = out["key"]
        failed = self.root / "failed" / f"{key}.json"
        if out["status"] != "done":
            write_json(failed, out)
            return
        if tmp is None:
            tmp = self.temp_dir(key)
            shutil.rmtree(tmp, ignore_errors=True)
            for name, blob in out.pop("files").items():
                write_atomic(tmp / name, blob)
        self.commit(key, tmp)
        failed.unlink(missing_ok=True)

    def records(self) -> Iterator[dict]:
        """Every finished run, as rote.experiments.record.read_record gives it, in key order."""
        return (read_record(self.record_dir(k)) for k in sorted(self.done_keys()))

    def write_index(self) -> Path:
        """Rewrite index.csv from the records (atomically); the records are the truth, the index a view."""
        path = self.root / "index.csv"
        write_atomic(path, index_csv(self.records()).encode())
        return path
