"""Checkpoints: a run's whole training state in one file, to go on exactly where it stopped.

What ``train_many`` keeps (rote.training.loop._Loop.state): every member's
weights, buffers and optimiser state, every random generator (each run's data
order, the shifts', torch's global one that dropout draws from), each stop
rule's state, the history so far, the per-example buffers, and the results of
the runs of a group that already stopped. Saved at the end of an epoch when
the interval has passed, and when training is interrupted (Ctrl-C, SIGTERM):
then the state at the end of the last complete epoch.

The file is written atomically: a header line that names the format, the
SHA-256 of what follows, then the state as ``torch.save`` writes it, read with
``torch.load(weights_only=True)`` (no pickled code runs). It names the runs it
belongs to and the run options that must survive a resume (``--save-model``).
A file whose checksum does not match (one flipped bit), of another format, for
other runs, or whose state does not fit the runs is refused in one line before
anything is loaded or deleted, and the run starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from rote.atomic import write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = "rote.checkpoint/2"
MAGIC = b"rote.checkpoint/2 sha256="  # then 64 hex digits and a newline, then the torch.save bytes
HEADER = len(MAGIC) + 64 + 1
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
                 on_save: Optional[Callable[[bytes], None]] = None, options: Optional[dict] = None):
        self.path, self.keys, self.interval, self.on_save = Path(path), list(keys), float(interval), on_save
        self.options = dict(options or {})  # run options kept for a resume, e.g. {'save_model': True}
        self.last = time.monotonic()
        self.saved_epoch: Optional[int] = None  # the epoch of the last checkpoint written

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def save(self, state: dict, interrupted: bool = False) -> None:
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "keys": self.keys, "interrupted": interrupted, "options": self.options,
                    "state": _encode(state)}, buf)
        blob = seal(buf.getvalue())
        write_atomic(self.path, blob)
        if self.on_save is not None:
            self.on_save(blob)
        self.last, self.saved_epoch = time.monotonic(), int(state["epoch"])

    def load(self, log: Callable[[str], None] = print) -> Optional[dict]:
        """The state saved at ``path`` for these runs; None (and one line to ``log``) if there is none to use.

        The options it was saved with are merged into ``options`` (a resume keeps them)."""
        if not self.path.exists():
            return None
        why = None
        try:
            obj = torch.load(io.BytesIO(unseal(self.path.read_bytes())), map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("state"), dict):
                why = "it is not a rote checkpoint of this version"
            elif obj.get("keys") != self.keys:
                why = f"it belongs to other runs ({', '.join(map(str, obj.get('keys') or []))})"
            elif not isinstance(obj["state"].get("epoch"), int) or obj["state"]["epoch"] < 1:
                why = "its epoch is not a positive whole number"
        except Exception as e:  # any damage: a checksum that does not match, truncated, not a torch file
            why = f"it is damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"[:200]
        if why is not None:
            log(f"rote: checkpoint {self.path} not used: {why}; the run starts over")
            return None
        state = _decode(obj["state"])
        self.options = {**self.options, **{k: v for k, v in (obj.get("options") or {}).items() if v}}
        self.saved_epoch = int(state["epoch"])
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class DamagedCheckpoint(ValueError):
    """A checkpoint file whose header or checksum does not match its bytes."""


def seal(blob: bytes) -> bytes:
    """The file's bytes: the header with the SHA-256 of blob, then blob."""
    return MAGIC + hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob


def unseal(data: bytes) -> bytes:
    """The torch.save bytes of a checkpoint file; DamagedCheckpoint if the header or the checksum is wrong."""
    if not data.startswith(MAGIC) or len(data) < HEADER or data[HEADER - 1:HEADER] != b"\n":
        raise DamagedCheckpoint("no rote.checkpoint/2 header (an older or foreign file)")
    digest, blob = data[len(MAGIC):HEADER - 1].decode("ascii", "replace"), data[HEADER:]
    if hashlib.sha256(blob).hexdigest() != digest:
        raise DamagedCheckpoint("its SHA-256 does not match its contents")
    return blob
