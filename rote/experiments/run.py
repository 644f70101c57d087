"""One run: settings in, a self-describing run directory out (its layout: rote.experiments.record).

Every check a user's input can fail happens before the directory is made, so
a bad flag or a missing file never leaves a half-written run behind.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path
from typing import Callable, Optional

from rote.config import RunConfig, resolve_device
from rote.data.prepare import prepare
from rote.models import check_model_name
from rote.experiments.record import (DISK_FULL, close_record, environment, make_run_dir, open_record,
                                    write_failed)
from rote.training.loop import EpochRecord, train
from rote.training.metrics import chance_sentence


class RunInterrupted(Exception):
    """Ctrl-C during a run; what was recorded so far is kept in run_dir."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def default_run_dir(cfg: RunConfig, root: Path = Path("runs")) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{stamp}-{cfg.key()[:6]}"


def epoch_line(rec: EpochRecord, epochs: int) -> str:
    full = "" if rec.train_acc_full is None else f"{rec.train_acc_full:10.4f}"
    return (f"{rec.epoch:>6d}/{epochs:<5d} {rec.seconds:7.2f} {rec.loss:8.4f} {rec.acc:7.4f} "
            f"{rec.val_loss:9.4f} {rec.val_acc:8.4f} {full}")


EPOCH_HEADER = (f"{'epoch':>12s} {'seconds':>7s} {'loss':>8s} {'acc':>7s} {'val_loss':>9s} {'val_acc':>8s} "
                f"{'full_train_acc':>14s}")


def run_group(cfgs: list[RunConfig], run_dirs: list[Path], *, dataset) -> list[dict]:
    """Train compatible runs side by side as one stacked model (rote.training.loop.train_many); one record each."""
    from rote.training.loop import train_many

    device = resolve_device(cfgs[0].device)
    datas = [prepare(dataset, c) for c in cfgs]
    env = {**environment(device, dataset), "group_size": len(cfgs)}
    histories = [open_record(c, d, r, env) for c, d, r in zip(cfgs, datas, run_dirs)]
    try:
        results = train_many(cfgs, datas, device=device, on_epoch=lambda j, rec: histories[j].append(rec))
    finally:
        for h in histories:
            h.close()
    return [close_record(c, d, res, r) for c, d, res, r in zip(cfgs, datas, results, run_dirs)]


def run(cfg: RunConfig, run_dir: Optional[Path] = None, **kw) -> tuple[Path, dict]:
    """Run one experiment and record it in run_dir; return (run_dir, result).

    Keywords: data_dir, dataset, log, progress, and ``on_epoch(record)``, called after each epoch is
    recorded (TensorBoard, a notebook's plot). A full disk or a place that cannot be written is one line
    (a RoteError), and the run directory this call made is removed.
    """
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    existed = run_dir.exists()
    try:
        return _run(cfg, run_dir, **kw)
    except OSError as e:
        where = Path(e.filename) if isinstance(e.filename, str) else run_dir
        error = write_failed(e, where, "the partial run directory is removed" if not existed else
                             "what the run wrote is left as it was")
        if error is None or (e.errno not in DISK_FULL and run_dir.resolve() not in (where.resolve(),
                                                                                   *where.resolve().parents)):
            raise  # not a write into the run directory (reading the data, say): not ours to explain
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise error from None


def _run(cfg: RunConfig, run_dir: Path, *, data_dir: Optional[str] = None, dataset=None,
         log: Callable[[str], None] = print, progress=None,
         on_epoch: Optional[Callable[[EpochRecord], None]] = None) -> tuple[Path, dict]:
    from rote.data.sources import load_dataset

    cfg.validate()
    device = resolve_device(cfg.device)
    if dataset is None:
        dataset = load_dataset(cfg.dataset, data_dir=data_dir, log=log)
    data = prepare(dataset, cfg)
    check_model_name(cfg.model, in_shape=dataset.image_shape, classes=dataset.classes, shape_known=True)
    make_run_dir(run_dir)

    env = environment(device, dataset)
    log(f"rote {env['rote']}  torch {env['torch']}  python {env['python']}  device {env['device']}"
        f" ({env['threads']} threads)")
    log("settings:\n" + cfg.describe())
    part = f" (a random subset of the first {data.n_part}; membership.npz at the end)" if len(data.out_index) else ""
    log(f"data: {dataset.name} from {getattr(dataset, 'source', '?')}; training on {len(data.y_fit)} images{part}, "
        f"validating on the last {len(data.y_val)}, testing on {len(data.y_test)} with their true labels")
    log(f"labels: '{cfg.labels}' changed {int(data.changed.sum())} of {len(data.changed)} "
        f"({data.changed_fraction:.1%}); inputs: '{cfg.inputs}'")

    history = open_record(cfg, data, run_dir, env)
    log(EPOCH_HEADER)

    def each_epoch(rec: EpochRecord):
        history.append(rec)
        log(epoch_line(rec, cfg.epochs))
        if on_epoch is not None:
            on_epoch(rec)

    try:
        res = train(cfg, data, device=device, on_epoch=each_epoch, progress=progress)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None
    finally:
        history.close()

    result = close_record(cfg, data, res, run_dir)
    log("")
    if res.message:
        log(res.message)
    when = (f"memorised (>= {cfg.stop_at:.1%} of the training part) in epoch {res.memorized_epoch}, "
            f"{res.seconds_to_memorize:.1f} s of training" if res.memorized_epoch else f"outcome: {res.outcome}")
    log(f"{when}; {res.epochs} epoch{'' if res.epochs == 1 else 's'}, {res.seconds_per_epoch:.2f} s/epoch, {res.images_per_second:,.0f} images/s")
    val = f"{res.val_acc:.2%}" if len(data.y_val) else "- (no validation part)"
    log(f"train acc {res.train_acc:.2%} (loss {res.train_loss:.4f})   val acc {val}   "
        f"test acc {res.test_acc:.2%} (loss {res.test_loss:.4f})")
    log(chance_sentence(res.test_acc, result["chance"]))
    return run_dir, result
