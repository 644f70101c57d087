"""One run: settings in, a self-describing run directory out.

    run_dir/
      config.json   the settings, versions, device, git commit, command line
      labels.npy    the training labels used, the true labels, which changed
      history.csv   one row per epoch, appended as the run goes
      result.json   final numbers, the outcome and the chance analysis

Every check a user's input can fail happens before the directory is made, so
a bad flag or a missing file never leaves a half-written run behind.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from rote.config import RunConfig
from rote.config import resolve_device, seeds_for
from rote.data.prepare import Prepared, prepare
from rote.errors import RoteError
from rote.experiments.record import CsvAppender, environment, write_json, write_npy
from rote.training.loop import EpochRecord, TrainResult, train
from rote.training.metrics import chance_analysis, chance_sentence

RESULT_SCHEMA = "rote.result/1"


class RunInterrupted(Exception):
    """Ctrl-C during a run; what was recorded so far is kept in run_dir."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def default_run_dir(cfg: RunConfig, root: Path = Path("runs")) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{stamp}-{cfg.key()[:6]}"


def labels_record(data: Prepared) -> np.ndarray:
    """A structured array: label used, true label, whether it changed, and which part it fell in."""
    n_fit = len(data.y_fit)
    rec = np.zeros(len(data.labels), dtype=[("label", "i8"), ("true_label", "i8"), ("changed", "?"),
                                             ("validation", "?")])
    rec["label"], rec["true_label"], rec["changed"] = data.labels, data.true_labels, data.changed
    rec["validation"][n_fit:] = True
    return rec


def epoch_line(rec: EpochRecord, epochs: int) -> str:
    full = "" if rec.train_acc_full is None else f"{rec.train_acc_full:10.4f}"
    return (f"{rec.epoch:>6d}/{epochs:<5d} {rec.seconds:7.2f} {rec.loss:8.4f} {rec.acc:7.4f} "
            f"{rec.val_loss:9.4f} {rec.val_acc:8.4f} {full}")


EPOCH_HEADER = (f"{'epoch':>12s} {'seconds':>7s} {'loss':>8s} {'acc':>7s} {'val_loss':>9s} {'val_acc':>8s} "
                f"{'full_train_acc':>14s}")


def result_dict(cfg: RunConfig, data: Prepared, res: TrainResult) -> dict:
    chance = chance_analysis(res.test_pred, data.y_test, data.classes, seed=seeds_for(cfg.seed)["chance"],
                             accuracy=res.test_acc)
    return {
        "schema": RESULT_SCHEMA,
        "config_key": cfg.key(),
        "outcome": res.outcome,
        "message": res.message,
        "epochs": res.epochs,
        "memorized_epoch": res.memorized_epoch,
        "seconds_to_memorize": res.seconds_to_memorize,
        "train_loss": res.train_loss,
        "train_acc": res.train_acc,
        "val_loss": res.val_loss,
        "val_acc": res.val_acc,
        "test_loss": res.test_loss,
        "test_acc": res.test_acc,
        "chance": {k: chance[k] for k in ("uniform", "histogram", "band", "band_method")},
        "verdict": chance["verdict"],
        "seconds_per_epoch": res.seconds_per_epoch,
        "images_per_second": res.images_per_second,
        "train_seconds": res.train_seconds,
        "n_fit": len(data.y_fit),
        "n_val": len(data.y_val),
        "labels_changed": int(data.changed.sum()),
        "labels_changed_fraction": data.changed_fraction,
        "parameters": res.parameters,
    }


def open_record(cfg: RunConfig, data: Prepared, run_dir: Path, env: dict) -> CsvAppender:
    """Start a run's record: config.json and labels.npy now, history.csv to append to."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {"config": cfg.to_dict(), "config_key": cfg.key(), "environment": env})
    write_npy(run_dir / "labels.npy", labels_record(data))
    return CsvAppender(run_dir / "history.csv", EpochRecord.FIELDS)


def close_record(cfg: RunConfig, data: Prepared, res: TrainResult, run_dir: Path) -> dict:
    result = result_dict(cfg, data, res)
    write_json(run_dir / "result.json", result)
    return result


def run_group(cfgs: list[RunConfig], run_dirs: list[Path], *, dataset) -> list[dict]:
    """Train compatible runs as one batched model (see rote.training.group); one record each."""
    from rote.training.loop import train_many

    device = resolve_device(cfgs[0].device)
    datas = [prepare(dataset, c) for c in cfgs]
    env = {**environment(device), "group_size": len(cfgs)}
    histories = [open_record(c, d, Path(r), env) for c, d, r in zip(cfgs, datas, run_dirs)]
    try:
        results = train_many(cfgs, datas, device=device, on_epoch=lambda j, rec: histories[j].append(asdict(rec)))
    finally:
        for h in histories:
            h.close()
    return [close_record(c, d, res, Path(r)) for c, d, res, r in zip(cfgs, datas, results, run_dirs)]


def run(cfg: RunConfig, run_dir: Optional[Path] = None, *, data_dir: Optional[str] = None, dataset=None,
        log: Callable[[str], None] = print, progress=None) -> tuple[Path, dict]:
    """Run one experiment and record it in run_dir; return (run_dir, result)."""
    from rote.data.sources import load_dataset

    cfg.validate()
    device = resolve_device(cfg.device)
    if dataset is None:
        dataset = load_dataset(cfg.dataset, data_dir=data_dir, log=log)
    data = prepare(dataset, cfg)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RoteError(f"output directory {run_dir} already exists and is not empty; choose another --out")

    env = environment(device)
    log(f"rote {env['rote']}  torch {env['torch']}  python {env['python']}  device {env['device']}"
        f" ({env['threads']} threads)")
    log("settings:\n" + cfg.describe())
    log(f"data: {dataset.name} from {getattr(dataset, 'source', '?')}; training on {len(data.y_fit)} images, "
        f"validating on the last {len(data.y_val)}, testing on {len(data.y_test)} with their true labels")
    log(f"labels: '{cfg.labels}' changed {int(data.changed.sum())} of {len(data.changed)} "
        f"({data.changed_fraction:.1%}); inputs: '{cfg.inputs}'")

    history = open_record(cfg, data, run_dir, env)
    log(EPOCH_HEADER)

    def on_epoch(rec: EpochRecord):
        history.append(asdict(rec))
        log(epoch_line(rec, cfg.epochs))

    try:
        res = train(cfg, data, device=device, on_epoch=on_epoch, progress=progress)
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
    log(f"{when}; {res.epochs} epochs, {res.seconds_per_epoch:.2f} s/epoch, {res.images_per_second:,.0f} images/s")
    log(f"train acc {res.train_acc:.2%} (loss {res.train_loss:.4f})   val acc {res.val_acc:.2%}   "
        f"test acc {res.test_acc:.2%} (loss {res.test_loss:.4f})")
    log(chance_sentence(res.test_acc, result["chance"]))
    return run_dir, result
