"""How many threads a run uses, and how they wait: right on a busy machine as on an idle one.

PyTorch's default (one thread per core, OpenMP threads that spin while they
wait for each other) is right for an idle machine and very wrong for a busy
one: a thread that spins at a barrier takes the core from the thread it waits
for, and on a 2-core machine running two other busy processes the seed
protocol went from about 1 s to 40-90 s per epoch (benchmarks/contention.py).
Two defaults fix most of it:

- OpenMP threads sleep instead of spinning when they wait (OMP_WAIT_POLICY
  PASSIVE). OpenMP reads this once, when torch loads it, so it is set when
  rote is imported, before torch is; a value already in the environment wins.
- A run uses the cores this process may run on (os.sched_getaffinity, and a
  container's CPU quota), shared out among a sweep's processes; when other
  processes keep some of them busy (/proc/stat over a fifth of a second), one
  line says so. The count is not lowered to the free cores by default: the
  number of threads can change the last bits of a convolution's sums (oneDNN
  splits them by thread), and a run should give the same numbers on the same
  machine whatever else runs on it. With sleeping waits, a thread too many
  costs little (0.96-1.66x in benchmarks/contention.py, against 4-20x for
  spinning waits); `--threads N` sets the count, e.g. to the free cores.

Threads change the speed, not the study: they are not a run setting and not
in a run's key (config.json records them). A run that must repeat bit for bit
on another machine is given the same --threads.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional

# Must happen before torch is imported anywhere in this process (and is inherited by worker processes).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# How long busy_cores watches the machine. Long enough to see a busy core, short enough to go unnoticed.
SAMPLE_SECONDS = 0.2


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def _cgroup_quota() -> Optional[float]:
    """A cgroup's CPU limit in cores (cgroup v2 cpu.max, v1 cfs quota), or None when there is none."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _cpu_times() -> dict[str, tuple[int, int]]:
    """{'cpuN': (busy jiffies, total jiffies)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals[:8]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
                out[name] = (sum(v) - idle, sum(v))
    return out


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many of this process's cores other processes keep busy now (0.0 = idle).

    Linux: the busy share of each usable core over ``seconds`` (/proc/stat), less
    this process's own CPU time. Elsewhere: the one-minute load average.
    """
    try:
        cores = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        t0, own0 = _cpu_times(), time.process_time()
        time.sleep(seconds)
        t1, own1 = _cpu_times(), time.process_time()
    except (AttributeError, OSError, ValueError):
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0.0
    busy = 0.0
    for name in cores & t0.keys() & t1.keys():
        total = t1[name][1] - t0[name][1]
        if total > 0:
            busy += (t1[name][0] - t0[name][0]) / total
    return max(0.0, busy - (own1 - own0) / seconds)


def free_cores(cores: Optional[int] = None, busy: Optional[float] = None) -> int:
    """Usable cores less those busy with other work, at least 1."""
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores, cores - round(busy)))


def choose_threads(jobs: int = 1, cores: Optional[int] = None, busy: Optional[float] = None) -> int:
    """Threads for each of ``jobs`` processes if they are to use only the free cores, at least 1 each (what
    the oversubscription warning suggests; the default is ``default_threads``)."""
    return max(1, free_cores(cores, busy) // max(1, jobs))


# Below this many multiply-adds per training step (forward), a model of dense layers runs faster on one
# thread than on two: its operations are too small to split, and the threads' hand-offs cost more than
# they save. Measured on a 2-core AVX2 machine (benchmarks/threads.py, docs/benchmark-threads.txt), two
# threads against one: mlp:16 alone (0.4 M) 1.52x slower, mlp:128 (3.3 M) 1.52x, a group of 8 mlp:16
# (3.3 M) 1.15x; from 13 M two threads won: 32 of them 0.83x, mlp:512 0.93x. Convolutions lost at most 3%
# on two threads (cnn:2 1.03x, 0.96x in another run) and gained with size, so they keep the default.
SMALL_STEP_MACS = 10_000_000


def default_threads(jobs: int = 1, cores: Optional[int] = None, step_macs: Optional[int] = None) -> int:
    """Threads for each of ``jobs`` processes by default: the usable cores shared out, at least 1 each, and
    1 for a dense model whose step is smaller than SMALL_STEP_MACS (``step_macs``:
    rote.models.dense_step_macs; None for any other model). It does not depend on the load, so that a run
    repeats bit for bit on the same machine."""
    if step_macs is not None and step_macs < SMALL_STEP_MACS:
        return 1
    return max(1, (usable_cores() if cores is None else cores) // max(1, jobs))


def oversubscribed(threads: int, jobs: int = 1, cores: Optional[int] = None, busy: Optional[float] = None) -> str:
    """One line of warning when jobs x threads and the other processes' work need more cores than there are
    (half a core of slack for noise), else ''."""
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    if busy + jobs * threads <= cores + 0.5:
        return ""
    what = f"{jobs} x {threads} threads" if jobs > 1 else f"{threads} thread{'s' * (threads > 1)}"
    fewer = choose_threads(jobs, cores, busy)
    hint = f" (--threads {fewer} uses only the free ones)" if fewer < threads else ""
    return (f"warning: this machine is oversubscribed: other processes keep {busy:.1f} of its {cores} usable cores "
            f"busy and rote runs {what}; training will be slower{hint}")


def env_threads() -> Optional[int]:
    """OMP_NUM_THREADS when it is set (the variable a user sets to give each process its threads), else None;
    a value that is not a positive whole number is one line (a RoteError)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        from rote.errors import RoteError

        raise RoteError(f"OMP_NUM_THREADS={raw!r} is not a positive whole number of threads; set it to one "
                        f"(e.g. 1), or unset it for rote's choice")
    return n


def use_threads(threads: Optional[int] = None, jobs: int = 1, warn=lambda s: print(s, file=sys.stderr),
                step_macs: Optional[int] = None) -> int:
    """Set this process's torch threads (``threads``, else OMP_NUM_THREADS when set, else chosen as above for
    one of ``jobs`` processes training steps of ``step_macs``), warn in one line if the machine is oversubscribed, and return the
    threads each process should use."""
    import torch

    cores, busy = usable_cores(), busy_cores()
    n = threads or env_threads() or default_threads(jobs, cores, step_macs)
    torch.set_num_threads(n)
    line = oversubscribed(n, jobs, cores, busy)
    if line:
        warn(line)
    return n
