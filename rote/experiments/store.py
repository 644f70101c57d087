"""The result store of a sweep: one directory, one record per run, an index for pandas.

    SWEEP_DIR/
      sweep.yaml        the sweep file as last run (an earlier, different one is kept as sweep.<time>.yaml)
      runs/<key>/       one record per finished run, named by the hash of its full config: the layout of a
                        `rote run` directory (rote.experiments.record)
      failed/<key>.json the error of a run that failed, until a rerun finishes it
      quarantine/       records that failed their check (damaged, foreign, copied), moved aside with the time
      index.csv         one row per finished run (record.index_csv); `pandas.read_csv(SWEEP_DIR/"index.csv")`
      .lock             held (flock) by the one sweep driver writing to the store; holds its pid

A record is written in ``runs/.tmp-<key>-<owner>/`` (owner: the writing process's
pid and start time, ``owner_id``) by the run itself, or by the driver from the
files a Ray worker sends back, and renamed to ``runs/<key>/`` only when complete
and checked: the rename is atomic, so a record is either all there or not there,
whatever kills the process (SIGKILL included). A rerun skips every key that has
a valid record and discards temporary directories whose process is gone, except
those holding a checkpoint (checkpoint.pt) of a run not yet done: the next
process to train that run adopts the directory and resumes. A run whose
settings differ in any field has another key, so a result is never reused for
other settings.

A record is trusted only after ``check_record`` (rote.experiments.record.check_run_dir):
its directory name, its config.json's key, the key recomputed from its settings
and result.json's key agree, every file parses within bounds, and result.json
has every field its schema asks for, of the type and in the range it says.
Anything else under runs/ is named in a warning, never counted, and moved to
quarantine/ by the next sweep, which then redoes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from rote.atomic import write_atomic
from rote.errors import ConfigError, RoteError
from rote.experiments.record import CHECKPOINT, REQUIRED, Record, check_run_dir, index_csv, read_record, write_json


def _warn(msg: str) -> None:
    print(f"rote: warning: {msg}", file=sys.stderr)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _start_time(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, Linux's /proc), or None where that is unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat[stat.rindex(")") + 2:].split()[19]  # field 22; the name in () may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def owner_id(pid: Optional[int] = None) -> str:
    """Who owns a temporary directory: 'pid.start' (the pid alone where the start time is unknown), so that a
    pid the system reuses for another process does not keep a dead run's directory alive."""
    pid = os.getpid() if pid is None else pid
    start = _start_time(pid)
    return f"{pid}.{start}" if start else str(pid)


def owner_alive(owner: str) -> bool:
    """Is the process named by owner_id (or, in directories of older versions, a bare pid) still running?"""
    pid, _, start = owner.partition(".")
    if not pid.isdigit() or not _pid_alive(int(pid)):
        return False
    return not start or _start_time(int(pid)) in (start, None)


def temp_owner(path: Path) -> tuple[str, str]:
    """(key, owner) of a temporary directory .tmp-<key>-<owner>."""
    key, _, owner = path.name[len(".tmp-"):].rpartition("-")
    return key, owner


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def check_record(d: Path, key: Optional[str] = None) -> Optional[str]:
    """Why the record in ``d`` cannot be trusted, or None if it can (rote.experiments.record.check_run_dir).

    ``key``: the key it must have (default: the directory's name).
    """
    return check_run_dir(d, key)


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self._valid: dict[str, tuple] = {}  # name -> signature of a record that passed check_record
        self._warned: set[str] = set()
        self._lock = None

    # -- the driver's side -------------------------------------------------------

    def check_writable(self) -> None:
        """Raise a RoteError (before anything is written) if the store cannot be made or written here."""
        if self.root.exists() and not self.root.is_dir():
            raise RoteError(f"store {self.root} is a file, not a directory; choose another --out")
        if self.runs.exists() and not self.runs.is_dir():
            raise RoteError(f"store {self.root} has a file where runs/ should be; choose another --out")
        existing = self.root
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        if not existing.is_dir():
            raise RoteError(f"cannot make store {self.root}: {existing} is not a directory; choose another --out")
        targets = [existing] + [p for p in (self.runs,) if p.is_dir()]
        if any(not os.access(p, os.W_OK | os.X_OK) for p in targets):
            raise RoteError(f"store {self.root} is not writable here ({existing}); choose another --out")

    def create(self) -> "Store":
        self.check_writable()
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RoteError(f"cannot make store {self.root}: {e.strerror}; choose another --out") from None
        return self

    def lock(self) -> None:
        """Take the store for this driver until it exits (or ``unlock``); one line if another holds it."""
        path = self.root / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise RoteError(f"cannot lock store {self.root}: {e.strerror}; choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RoteError(f"store {self.root} is in use by another rote sweep (pid {pid}); wait for it or "
                                f"use another --out") from None
            raise RoteError(f"cannot lock store {self.root}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def record_dir(self, key: str) -> Path:
        return self.runs / key

    def temp_dir(self, key: str) -> Path:
        return self.runs / f".tmp-{key}-{owner_id()}"

    def _stale(self, pattern: str = ".tmp-*") -> list[Path]:
        """Temporary directories whose process is gone (runs that were killed or interrupted), newest first."""
        out = []
        for p in self.runs.glob(pattern):
            if owner_alive(temp_owner(p)[1]):
                continue
            out.append(p)
        return sorted(out, key=lambda p: _mtime(p / CHECKPOINT), reverse=True)

    def clean_stale(self) -> int:
        """Remove the temporary directories of killed or interrupted runs, except those holding a checkpoint
        of a run not yet done (``adopt`` resumes it); returns how many were removed."""
        n = 0
        for p in self._stale():
            key = temp_owner(p)[0]
            if (p / CHECKPOINT).is_file() and not self.done(key):
                continue
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n

    def owners(self, keys: list[str]) -> set[int]:
        """The pids of the processes that hold temporary directories of these keys (alive or not)."""
        pids = set()
        for key in keys:
            for p in self.runs.glob(f".tmp-{key}-*"):
                k, owner = temp_owner(p)
                if k == key and owner.partition(".")[0].isdigit():
                    pids.add(int(owner.partition(".")[0]))
        return pids

    def resumable(self) -> int:
        """How many temporary directories of killed or interrupted runs hold a checkpoint to resume from."""
        return sum((p / CHECKPOINT).is_file() for p in self._stale())

    def adopt(self, key: str) -> Path:
        """This process's temporary directory for ``key``: empty, or the newest checkpointed one a killed
        or interrupted process left (renamed to this process's name, so that it is ours from now on)."""
        mine = self.temp_dir(key)
        shutil.rmtree(mine, ignore_errors=True)
        for p in self._stale(f".tmp-{key}-*"):
            if temp_owner(p)[0] != key:
                continue
            if (p / CHECKPOINT).is_file() and not mine.exists():
                try:
                    os.rename(p, mine)
                    continue
                except OSError:  # another process adopted it first
                    pass
            shutil.rmtree(p, ignore_errors=True)
        return mine

    def quarantine(self, name: str, why: str) -> Path:
        """Move a record that failed its check to quarantine/<name>-<time>, so that a rerun redoes it."""
        dest = self.root / "quarantine" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
            n += 1
        os.rename(self.runs / name, dest)
        _warn(f"record runs/{name} in {self.root} is not valid ({why}); moved to {dest}, a rerun redoes it")
        self._valid.pop(name, None)
        return dest

    def quarantine_bad(self) -> int:
        """Check every record and move the bad ones aside; the driver calls this holding the lock."""
        bad = self._scan(report=lambda name, why: self.quarantine(name, why))
        return len(bad)

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
        It is checked first: a record with a file missing or unreadable is recorded as failed, not published.
        """
        key = out["key"]
        failed = self.root / "failed" / f"{key}.json"
        if out["status"] == "done":
            if tmp is None:
                tmp = self.temp_dir(key)
                shutil.rmtree(tmp, ignore_errors=True)
                for name, blob in out.pop("files").items():
                    write_atomic(tmp / name, blob)
            (tmp / CHECKPOINT).unlink(missing_ok=True)  # the record stays small: a finished run resumes nothing
            why = check_record(tmp, key)
            if why is None:
                self.commit(key, tmp)
                failed.unlink(missing_ok=True)
                return
            shutil.rmtree(tmp, ignore_errors=True)
            out.update(status="failed", error=f"incomplete record, not published: {why}")
        out.pop("files", None)
        write_json(failed, out)

    # -- everyone's side ---------------------------------------------------------

    def _signature(self, d: Path) -> Optional[tuple]:
        try:
            return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in (os.stat(d / n) for n in REQUIRED))
        except OSError:
            return None

    def _scan(self, report: Callable[[str, str], None]) -> list[str]:
        """Names of the records under runs/ that fail check_record (each passed to ``report``)."""
        bad = []
        try:
            entries = sorted(self.runs.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return bad
        for d in entries:
            if d.name.startswith(".") or not d.is_dir():
                continue
            sig = self._signature(d)
            if sig is not None and self._valid.get(d.name) == sig:
                continue
            why = check_record(d)
            if why is None:
                self._valid[d.name] = sig
            else:
                self._valid.pop(d.name, None)
                bad.append(d.name)
                report(d.name, why)
        return bad

    def _warn_once(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            _warn(f"record runs/{name} in {self.root} is not valid ({why}); left out (a sweep moves it aside "
                  f"and redoes it)")

    def done(self, key: str) -> bool:
        d = self.record_dir(key)
        sig = self._signature(d)
        if sig is None:
            return False
        if self._valid.get(key) == sig:
            return True
        if check_record(d) is None:
            self._valid[key] = sig
            return True
        return False

    def done_keys(self, warn: bool = True) -> set[str]:
        """Keys of the valid records; a bad one is named in a warning (once) and left out."""
        bad = set(self._scan(self._warn_once if warn else lambda n, w: None))
        return {n for n in self._valid if n not in bad and (self.runs / n).is_dir()}

    def records(self) -> Iterator[Record]:
        """Every valid finished run, as rote.experiments.record.read_record gives it, in key order."""
        return (read_record(self.record_dir(k)) for k in sorted(self.done_keys()))

    def write_index(self) -> Path:
        """Rewrite index.csv from the records (atomically); the records are the truth, the index a view."""
        path = self.root / "index.csv"
        write_atomic(path, index_csv(self.records()).encode())
        return path
