"""Self-describing records: what a run was, where it ran, and how files are written.

Every file is written atomically (a temporary file in the same directory,
then ``os.replace``), so a reader never sees half a file, whatever kills the
writer.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rote.atomic import write_atomic


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN; null reads back as NaN in pandas
    if isinstance(v, (np.floating,)):
        return _jsonable(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def write_npy(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_atomic(path, buf.getvalue())


def git_commit() -> str | None:
    """The commit of the rote checkout, if rote runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(device) -> dict:
    import torch

    import rote

    env = {
        "rote": rote.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "command": sys.argv,
    }
    if getattr(device, "type", None) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class CsvAppender:
    """history.csv: a header, then one row per epoch, flushed as soon as it is known."""

    def __init__(self, path: Path, fields: Iterable[str]):
        self.path = Path(path)
        self.fields = list(fields)
        self._f = open(self.path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(self.fields)
        self._f.flush()

    def append(self, row: dict) -> None:
        self._w.writerow(["" if row.get(k) is None else _fmt(row.get(k)) for k in self.fields])
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _fmt(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return v
