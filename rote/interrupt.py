"""SIGTERM handled as Ctrl-C is: schedulers (SLURM, Kubernetes, systemd) send it before SIGKILL.

``Terminated`` is a KeyboardInterrupt, so every place that stops cleanly on
Ctrl-C (keeping what finished, checkpointing the runs in flight, recording
nothing as failed) does the same on SIGTERM; the CLI then exits with 143.
"""

from __future__ import annotations

import signal

EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""


def _raise_terminated(signum, frame):
    # a second SIGTERM while the first is being handled (a checkpoint being written) must not cut it short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def sigterm_as_interrupt() -> None:
    """From now on, SIGTERM raises Terminated in the main thread (once)."""
    signal.signal(signal.SIGTERM, _raise_terminated)
