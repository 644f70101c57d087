"""Scratch directories that do not outlive their process by more than one start.

A process that is killed (SIGKILL, a Ray worker stopped with the driver's
Ctrl-C) never runs its ``finally``, so its scratch directory stays behind. Each
scratch directory is therefore named by its owner, ``<prefix><pid>-<start>-XXXX``
(the process id and its start time, so that a reused pid is told apart), and
making one first removes those of the same prefix whose owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional


REPORT_SCRATCH = ".rote-report-"  # the HTML report's figures, beside the report (rote.reporting.report)


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux); None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its closing one
    return stat[stat.rindex(")") + 2:].split()[19]


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    now = _start_time(pid)
    return now is None or start == "0" or now == start  # another process under a reused pid: the owner is gone


def _owner_tag() -> str:
    return f"{os.getpid()}-{_start_time(os.getpid()) or '0'}"


def clean_stale(root: Path, prefix: str) -> int:
    """Remove the scratch directories under root named ``<prefix><pid>-<start>-...`` whose owner is gone."""
    n = 0
    pattern = re.compile(re.escape(prefix) + r"(\d+)-(\d+)-")
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return 0
    for p in entries:
        m = pattern.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _alive(int(m.group(1)), m.group(2)):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def make_scratch(prefix: str = "rote-", root: Optional[Path] = None) -> Path:
    """A new scratch directory under root (default: the system's temporary directory), after removing the
    stale ones of the same prefix. The caller removes it when done."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    clean_stale(root, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{_owner_tag()}-", dir=root))


@contextlib.contextmanager
def scratch(prefix: str = "rote-", root: Optional[Path] = None) -> Iterator[Path]:
    """make_scratch as a context: removed on the way out, whatever happens short of a kill."""
    d = make_scratch(prefix, root)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
