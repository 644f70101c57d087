"""Optional experiment tracking: each epoch's scalars for TensorBoard.

Not a run setting (it changes no result): a run logs through its ``on_epoch``
callback, and a sweep logs each run from its record once it has landed in the
store (so the local pool, batched groups and Ray workers need nothing). Every
run gets its own subdirectory of the --tensorboard directory, named by its time
and condition, so that a second run is a second line and not steps appended to
the first; at the end its settings and its result (test accuracy, outcome) go
to the hparams plugin. The extra is ``pip install 'rote-memorization[tensorboard]'``.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from rote.errors import RoteError

PIP = "pip install 'rote-memorization[tensorboard]' (or pip install tensorboard)"
# history.csv columns that are logged, as TensorBoard tags
SCALARS = {"loss": "train/loss", "acc": "train/acc", "val_loss": "val/loss", "val_acc": "val/acc",
           "train_loss_full": "train_full/loss", "train_acc_full": "train_full/acc", "seconds": "time/epoch_seconds"}


def require_tensorboard(root=None):
    """torch's SummaryWriter, or a one-line RoteError naming the pip command (or saying that ``root``, the
    --tensorboard directory, is a file)."""
    if root is not None and Path(root).exists() and not Path(root).is_dir():
        raise RoteError(f"--tensorboard {root}: that is a file; give a directory for the TensorBoard logs")
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


def condition_words(cfg) -> str:
    """'mnist-permute-seed-cnn-seed0': what a run is, in a folder name."""
    words = [cfg.dataset, cfg.labels] + ([] if cfg.inputs == "none" else [cfg.inputs]) + [cfg.model, f"seed{cfg.seed}"]
    if cfg.n_train != type(cfg)().n_train:
        words.insert(1, f"n{cfg.n_train}")
    return "-".join(re.sub(r"[^A-Za-z0-9.]+", "", str(w).replace(":", "")) or "x" for w in words)


def run_logdir(root: Path, cfg, when: _dt.datetime | None = None) -> Path:
    """A new subdirectory of root for one run: '20261201-0231-05_mnist-permute-seed-cnn-seed0' (never reused)."""
    stamp = (when or _dt.datetime.now()).strftime("%Y%m%d-%H%M-%S")
    d = Path(root) / f"{stamp}_{condition_words(cfg)}"
    n = 2
    while d.exists():
        d = Path(root) / f"{stamp}_{condition_words(cfg)}-{n}"
        n += 1
    return d


def _hparam(v):
    """A value the hparams plugin takes: numbers and strings as they are, anything else as text."""
    return v if isinstance(v, (bool, int, float, str)) else "none" if v is None else str(v)


class TensorBoardLogger:
    """on_epoch(record) writes the record's scalars at step = epoch into logdir; finish(result) the hparams."""

    def __init__(self, logdir: Path, cfg=None):
        writer = require_tensorboard()
        self.logdir = Path(logdir)
        self.cfg = cfg
        self.w = writer(log_dir=str(logdir))
        if cfg is not None:
            self.w.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in cfg.to_dict().items()))

    def finish(self, result: dict) -> None:
        """The run's settings and its result in the hparams plugin's table (one row per run directory)."""
        from torch.utils.tensorboard.summary import hparams

        settings = {k: _hparam(v) for k, v in (self.cfg.to_dict() if self.cfg is not None else {}).items()}
        settings["outcome"] = str(result.get("outcome"))
        metrics = {f"result/{k}": float(result[k]) for k in ("test_acc", "train_acc", "epochs")
                   if _value(result.get(k)) is not None}
        for summary in hparams(settings, metrics):
            self.w.file_writer.add_summary(summary)
        for tag, v in metrics.items():
            self.w.add_scalar(tag, v, int(result.get("epochs") or 0))
        self.w.add_text("outcome", f"{result.get('outcome')}: test acc {result.get('test_acc')}, "
                                   f"train acc {result.get('train_acc')} after {result.get('epochs')} epoch(s)")
        self.w.flush()

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
    """Log a finished run's history.csv, epoch by epoch, and its result into logdir (a sweep: one per run)."""
    from rote.experiments.record import read_history, read_record

    from rote.config import RunConfig

    rec = read_record(run_dir)
    h = read_history(run_dir)
    tb = TensorBoardLogger(logdir, RunConfig.from_dict(rec["config"]))
    try:
        for i, epoch in enumerate(h.get("epoch", [])):
            tb.log(int(epoch), {c: h[c][i] for c in SCALARS if c in h})
        tb.finish(rec["result"])
    finally:
        tb.close()
