"""Optional experiment tracking: each epoch's scalars for TensorBoard.

Not a run setting (it changes no result): a run logs through its ``on_epoch``
callback, and a sweep logs each run from its record once it has landed in the
store (so the local pool, batched groups and Ray workers need nothing). The
extra is ``pip install 'rote-memorization[tensorboard]'``.
"""

from __future__ import annotations

from pathlib import Path

from rote.errors import RoteError

PIP = "pip install 'rote-memorization[tensorboard]' (or pip install tensorboard)"
# history.csv columns that are logged, as TensorBoard tags
SCALARS = {"loss": "train/loss", "acc": "train/acc", "val_loss": "val/loss", "val_acc": "val/acc",
           "train_loss_full": "train_full/loss", "train_acc_full": "train_full/acc", "seconds": "time/epoch_seconds"}


def require_tensorboard():
    """torch's SummaryWriter, or a one-line RoteError naming the pip command."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs the package)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RoteError(f"--tensorboard needs the tensorboard package: {PIP}") from None
    return SummaryWriter


def _value(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # NaN (no validation part) is left out


class TensorBoardLogger:
    """on_epoch(record) writes the record's scalars at step = epoch into logdir."""

    def __init__(self, logdir: Path, cfg=None):
        writer = require_tensorboard()
        self.w = writer(log_dir=str(logdir))
        if cfg is not None:
            self.w.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in cfg.to_dict().items()))

    def log(self, epoch: int, values: dict) -> None:
        for col, tag in SCALARS.items():
            v = _value(values.get(col))
            if v is not None:
                self.w.add_scalar(tag, v, int(epoch))
        self.w.flush()

    def on_epoch(self, rec) -> None:
        self.log(rec.epoch, {c: getattr(rec, c, None) for c in SCALARS})

    def close(self) -> None:
        self.w.close()


def log_record(logdir: Path, run_dir: Path) -> None:
    """Log a finished run's history.csv, epoch by epoch, into logdir (a sweep: one per run key)."""
    from rote.experiments.record import read_history, read_record

    from rote.config import RunConfig

    rec = read_record(run_dir)
    h = read_history(run_dir)
    tb = TensorBoardLogger(logdir, RunConfig.from_dict(rec["config"]))
    try:
        for i, epoch in enumerate(h.get("epoch", [])):
            tb.log(int(epoch), {c: h[c][i] for c in SCALARS if c in h})
    finally:
        tb.close()
