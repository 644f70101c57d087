"""Checkpoints: a run's whole training state in one file, to go on exactly where it stopped.

What ``train_many`` keeps (rote.training.loop._Loop.state): every member's
weights, buffers and optimiser state, every random generator (each run's data
order, the shifts', torch's global one that dropout draws from), each stop
rule's state, the history so far, the per-example buffers, and the results of
the runs of a group that already stopped. Saved at the end of an epoch when
the interval has passed, and when training is interrupted (Ctrl-C, SIGTERM):
then the state at the end of the last complete epoch.

The file is written atomically and read with ``torch.load(weights_only=True)``
(no pickled code runs); it names the runs it belongs to. A damaged file, or one
for other runs, is refused in one line and the run starts over.
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from rote.atomic import write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = "rote.checkpoint/1"
# Seconds between checkpoints by default: at most a few seconds of writing per ten minutes of training.
DEFAULT_INTERVAL = 600.0


def _encode(obj):
    """Plain values only: records and results as dicts, NumPy arrays as tensors (weights_only loading takes
    tensors, not arrays), marked to come back as arrays."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encode(obj.to_state() if hasattr(obj, "to_state") else dataclasses.asdict(obj))
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


class Checkpoint:
    """The checkpoint file of a run (or of a group of runs: ``keys`` in order) at ``path``.

    ``interval``: seconds between checkpoints (0: every epoch). ``on_save(bytes)``,
    if given, also gets each checkpoint's bytes (a Ray worker sends them to its driver).
    """

    def __init__(self, path: Path, keys: list[str], interval: float = DEFAULT_INTERVAL,
                 on_save: Optional[Callable[[bytes], None]] = None):
        self.path, self.keys, self.interval, self.on_save = Path(path), list(keys), float(interval), on_save
        self.last = time.monotonic()
        self.saved_epoch: Optional[int] = None  # the epoch of the last checkpoint written

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def save(self, state: dict, interrupted: bool = False) -> None:
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "keys": self.keys, "interrupted": interrupted, "state": _encode(state)}, buf)
        blob = buf.getvalue()
        write_atomic(self.path, blob)
        if self.on_save is not None:
            self.on_save(blob)
        self.last, self.saved_epoch = time.monotonic(), int(state["epoch"])

    def load(self, log: Callable[[str], None] = print) -> Optional[dict]:
        """The state saved at ``path`` for these runs; None (and one line to ``log``) if there is none to use."""
        if not self.path.is_file():
            return None
        why = None
        try:
            obj = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("state"), dict):
                why = "it is not a rote checkpoint of this version"
            elif obj.get("keys") != self.keys:
                why = f"it belongs to other runs ({', '.join(map(str, obj.get('keys') or []))})"
        except Exception as e:  # any damage: truncated, corrupted, not a torch file
            why = f"it is damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"[:200]
        if why is not None:
            log(f"rote: checkpoint {self.path} not used: {why}; the run starts over")
            return None
        state = _decode(obj["state"])
        self.saved_epoch = int(state.get("epoch", 0))
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
