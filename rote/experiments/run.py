"""One run: settings in, a self-describing run directory out (its layout: rote.experiments.record).

Every check a user's input can fail happens before the directory is made, so
a bad flag or a missing file never leaves a half-written run behind.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from rote.atomic import write_atomic
from rote.config import RunConfig, check_identity, resolve_device
from rote.data.prepare import prepare
from rote.errors import RoteError
from rote.models import check_fits, check_model, meta_parameters
from rote.experiments.record import (CHECKPOINT, DISK_FULL, MODEL, close_record, environment, make_run_dir,
                                    open_record, write_failed)
from rote.training.optim import check_optimizer
from rote.training.records import EpochRecord
from rote.training.metrics import chance_sentence


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; what was recorded so far is kept in run_dir, with a checkpoint of
    the last complete epoch (``kept_epoch``; None when none was written) to resume from.

    A KeyboardInterrupt, so that a script's ``except Exception`` never swallows the user's Ctrl-C."""

    def __init__(self, run_dir: Path, kept_epoch: Optional[int] = None, terminated: bool = False):
        super().__init__(str(run_dir))
        self.run_dir, self.kept_epoch, self.terminated = run_dir, kept_epoch, terminated


def default_run_dir(cfg: RunConfig, root: Path = Path("runs")) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{stamp}-{cfg.key()[:6]}"


def epoch_line(rec: EpochRecord, epochs: int) -> str:
    full = "" if rec.train_acc_full is None else f"{rec.train_acc_full:10.4f}"
    return (f"{rec.epoch:>6d}/{epochs:<5d} {rec.seconds:7.2f} {rec.loss:8.4f} {rec.acc:7.4f} "
            f"{rec.val_loss:9.4f} {rec.val_acc:8.4f} {full}")


EPOCH_HEADER = (f"{'epoch':>12s} {'seconds':>7s} {'loss':>8s} {'acc':>7s} {'val_loss':>9s} {'val_acc':>8s} "
                f"{'full_train_acc':>14s}")


def run_group(cfgs: list[RunConfig], run_dirs: list[Path], *, dataset, checkpoint_every: Optional[float] = None,
              save_model: bool = False, log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Train compatible runs side by side as one stacked model (rote.training.loop.train_many); one record each.

    A checkpoint of the whole group is kept in the first run's directory (see ``train_into``)."""
    device = resolve_device(cfgs[0].device)
    datas = [prepare(dataset, c) for c in cfgs]
    c0, params = cfgs[0], meta_parameters(cfgs[0].model, datas[0].x_fit.shape[1:], datas[0].classes)
    if params is not None:  # R stacked models, refused before any is allocated
        check_fits(c0.model, params, device, c0.optimizer, c0.momentum, models=len(cfgs))
    env = {**environment(device, dataset), "group_size": len(cfgs)}
    with run_dir_lock(run_dirs[0]):
        done = finished_results(run_dirs, cfgs)
        if done is not None:
            return done
        return [result for _, result in train_into(cfgs, datas, run_dirs, env, device=device,
                                                   checkpoint_every=checkpoint_every, save_model=save_model,
                                                   log=log)]


def finished_results(run_dirs: list[Path], cfgs: list[RunConfig]) -> Optional[list[dict]]:
    """The results of runs that finished but were stopped before their checkpoint was removed (a kill in the
    instant between the two): every directory holds a valid result.json of its settings. The checkpoint
    goes now; None when some run has not finished."""
    from rote.experiments.record import RESULT, RecordError, check_run_dir, read_json

    out = []
    for c, d in zip(cfgs, run_dirs):
        d = Path(d)
        if not (d / RESULT).is_file():
            return None
        try:
            if check_run_dir(d, key=c.key()) is not None:
                return None
            out.append(read_json(d / RESULT))
        except (RecordError, OSError):
            return None
    (Path(run_dirs[0]) / CHECKPOINT).unlink(missing_ok=True)
    return out


class run_dir_lock:
    """One writer per run directory: an exclusive flock on the directory itself, held while the run trains.

    A second process (or a second call in this one) that tries to write the same directory is refused in
    one line before it writes anything. Where flock does not exist (Windows), no lock is taken."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.fd = Path(run_dir), None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RoteError(f"another rote process is writing to {self.run_dir}; wait for it to finish, or "
                            f"choose another --out") from None
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None
        return False


def _resume_environment(run_dir: Path, env: dict, epoch: int, log: Callable[[str], None]) -> dict:
    """The environment a resumed run records: the one it started in, and a line per resume saying where and
    with what it went on (a record never claims one environment for epochs another trained)."""
    from rote.experiments.record import CONFIG, read_json

    try:
        first = read_json(Path(run_dir) / CONFIG)["environment"]
        if not isinstance(first, dict):
            raise TypeError
    except Exception:  # config.json unreadable: the checkpoint still holds the epochs; record what is known
        return {**env, "resumed": [{"epoch": epoch, **_resume_entry(env)}]}
    if first.get("rote") != env.get("rote") or first.get("torch") != env.get("torch"):
        log(f"rote: the run in {run_dir} was started with rote {first.get('rote')} and torch {first.get('torch')};"
            f" it goes on with rote {env.get('rote')} and torch {env.get('torch')} (recorded in config.json)")
    resumed = [r for r in first.get("resumed", []) if isinstance(r, dict)]
    return {**first, "resumed": resumed + [{"epoch": epoch, **_resume_entry(env)}]}


def _resume_entry(env: dict) -> dict:
    return {k: env.get(k) for k in ("rote", "torch", "device", "threads", "command", "git_commit") if k in env}


def recorded_threads(run_dir: Path) -> Optional[int]:
    """The CPU threads a run directory's run was started with (config.json), or None if it does not say."""
    from rote.experiments.record import CONFIG, read_json

    try:
        n = read_json(Path(run_dir) / CONFIG)["environment"]["threads"]
    except Exception:
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None


def train_into(cfgs: list[RunConfig], datas: list, run_dirs: list[Path], env: dict, *, device,
               on_epoch: Optional[Callable[[int, EpochRecord], None]] = None, progress=None,
               checkpoint_every: Optional[float] = None, save_model: bool = False,
               log: Callable[[str], None] = print) -> list[tuple]:
    """Train runs into their directories (config.json, labels.npy, history.csv as it grows; model.pt with
    ``save_model``), resuming from the checkpoint in the first directory when there is one for these runs;
    returns (TrainResult, result dict) per run, each record closed (result.json written).

    ``checkpoint_every``: seconds between checkpoints (0: every epoch; default DEFAULT_INTERVAL); a
    checkpoint is also written when interrupted. On Ctrl-C or SIGTERM: RunInterrupted, the checkpoint kept.
    A resume goes on with the options the checkpoint was saved with (``save_model``) and on a CPU with the
    thread count the run started with (threads change a convolution's last bits). The checkpoint is removed
    only after every record is closed, so no instant of a run's end can lose it.
    """
    import torch

    from rote.interrupt import Terminated
    from rote.training.checkpoint import DEFAULT_INTERVAL, Checkpoint
    from rote.training.loop import CheckpointMismatch, resumed_histories, train_many

    every = DEFAULT_INTERVAL if checkpoint_every is None else checkpoint_every
    path = Path(run_dirs[0]) / CHECKPOINT
    if path.exists() and not path.is_file():
        raise RoteError(f"{path} is not a file, so no checkpoint could be saved there; remove it and run again")
    ckpt = Checkpoint(path, [c.key() for c in cfgs], every, options={"save_model": bool(save_model)})
    state = ckpt.load(_warn)
    threads_before = torch.get_num_threads()
    if state is not None:
        log(f"resuming from the checkpoint of epoch {state['epoch']} in {ckpt.path}")
        if ckpt.options.get("save_model") and not save_model:
            save_model = True
            log("rote: the run was started with --save-model; model.pt will be kept")
        threads = recorded_threads(run_dirs[0])
        if threads is not None and threads != threads_before and getattr(device, "type", "cpu") == "cpu":
            log(f"rote: the run was started on {threads} CPU threads; it goes on with {threads} (not "
                f"{threads_before}), as threads change a convolution's last bits")
            torch.set_num_threads(threads)
            env = {**env, "threads": threads}
        env = _resume_environment(run_dirs[0], env, int(state["epoch"]), log)
        ckpt.options["save_model"] = bool(save_model)

    def attempt(state):
        old = resumed_histories(state, len(cfgs)) if state is not None else [[] for _ in cfgs]
        histories = [open_record(c, d, r, env, h) for c, d, r, h in zip(cfgs, datas, run_dirs, old)]

        def each(j, rec):
            histories[j].append(rec)
            if on_epoch is not None:
                on_epoch(j, rec)
        try:
            return train_many(cfgs, datas, device=device, on_epoch=each, progress=progress, checkpoint=ckpt,
                              resume=state, keep_weights=save_model)
        finally:
            for h in histories:
                h.close()

    try:
        try:
            try:
                results = attempt(state)
            except CheckpointMismatch as e:
                _warn(f"rote: checkpoint {ckpt.path} not used: it does not fit these runs ({e}); the run starts "
                      f"over")
                results = attempt(None)
        except KeyboardInterrupt as e:
            raise RunInterrupted(Path(run_dirs[0]), ckpt.saved_epoch if ckpt.path.is_file() else None,
                                 isinstance(e, Terminated)) from None
        if save_model:
            for c, d, res, r in zip(cfgs, datas, results, run_dirs):
                save_model_file(Path(r) / MODEL, c.model, tuple(d.x_fit.shape[1:]), d.classes, res.weights)
        closed = [(res, close_record(c, d, res, r)) for c, d, res, r in zip(cfgs, datas, results, run_dirs)]
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    ckpt.remove()  # only now: every result.json is on disk
    return closed


def _warn(line: str) -> None:
    """What a user must hear even from a quiet run (a checkpoint refused): one line on stderr."""
    print(line, file=sys.stderr)


def save_model_file(path: Path, model: str, in_shape: tuple, classes: int, weights: dict) -> None:
    """model.pt: {'model': the model's name, 'in_shape', 'classes', 'state_dict'}; ``load_model`` rebuilds it."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": model, "in_shape": list(in_shape), "classes": classes, "state_dict": weights}, buf)
    write_atomic(path, buf.getvalue())


def run_threads(cfg: RunConfig, threads: Optional[int] = None, data_dir=None,
                warn: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> int:
    """Set torch's threads for one run as `rote run` and `rote.run` both do: ``threads`` when given, else
    OMP_NUM_THREADS when set, else rote's rule for the run's model (rote.threads); returns the count."""
    from rote.experiments.plan import dataset_shape, step_macs
    from rote.threads import use_threads

    try:
        macs = step_macs([cfg], {cfg.dataset: dataset_shape(cfg.dataset, data_dir)})
    except RoteError:  # its data cannot be read yet: the run itself says what is wrong, in one line
        macs = None
    return use_threads(threads, warn=warn, step_macs=macs)


def load_model(run_dir: Path):
    """The final model of a run recorded with save_model (model.pt), in eval mode on the CPU."""
    import torch

    from rote.models import create_model

    path = Path(run_dir) / MODEL
    if not path.is_file():
        raise RoteError(f"{run_dir} has no {MODEL}; rerun with --save-model (save_model=True) to keep the weights")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(saved["model"], in_shape=tuple(saved["in_shape"]), classes=saved["classes"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def run(cfg: RunConfig, run_dir: Optional[Path] = None, **kw) -> tuple[Path, dict]:
    """Run one experiment and record it in run_dir; return (run_dir, result).

    Keywords: data_dir, dataset, log, progress, ``on_epoch(record)`` (called after each epoch is recorded:
    TensorBoard, a notebook's plot), ``resume`` (run_dir may hold an unfinished run of these settings; go on
    from its checkpoint, or start over in it with one line saying why), ``checkpoint_every`` and
    ``save_model`` (see ``train_into``). A full disk or a place that cannot be written is one line (a
    RoteError), and the run directory this call made is removed.
    """
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    existed = run_dir.exists()
    try:
        return _run(cfg, run_dir, **kw)
    except OSError as e:
        where = Path(e.filename) if isinstance(e.filename, str) else run_dir
        checkpointed = (run_dir / CHECKPOINT).is_file()
        if checkpointed:  # progress worth keeping: never removed
            kept = (f"the checkpoint in {run_dir} is kept; after freeing space go on with "
                    f"`rote run --resume {run_dir}`")
        else:
            kept = "the partial run directory is removed" if not existed else "what the run wrote is left as it was"
        error = write_failed(e, where, kept)
        if error is None or (e.errno not in DISK_FULL and run_dir.resolve() not in (where.resolve(),
                                                                                   *where.resolve().parents)):
            raise  # not a write into the run directory (reading the data, say): not ours to explain
        if not existed and not checkpointed:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise error from None


def _run(cfg: RunConfig, run_dir: Path, *, data_dir: Optional[str] = None, dataset=None,
         log: Callable[[str], None] = print, progress=None,
         on_epoch: Optional[Callable[[EpochRecord], None]] = None, resume: bool = False,
         checkpoint_every: Optional[float] = None, save_model: bool = False) -> tuple[Path, dict]:
    from rote.data.sources import load_dataset

    cfg.validate()
    check_identity(cfg)  # a user's model or data edited since these settings were made: refused
    check_optimizer(cfg)
    device = resolve_device(cfg.device)
    if dataset is None:
        dataset = load_dataset(cfg.dataset, data_dir=data_dir, log=log)
    data = prepare(dataset, cfg)
    # the shape the model sees (after preprocessing); too big for this device or a wrong shape: one line, nothing written
    parameters = check_model(cfg.model, in_shape=tuple(data.x_fit.shape[1:]), classes=data.classes, device=device,
                             optimizer=cfg.optimizer, momentum=cfg.momentum)
    if not resume:
        if run_dir.is_dir() and (run_dir / CHECKPOINT).is_file():
            raise RoteError(f"output directory {run_dir} holds an unfinished run; go on with it with "
                            f"`rote run --resume {run_dir}`, or choose another --out")
        make_run_dir(run_dir)
    with run_dir_lock(run_dir):
        if not resume and any(run_dir.iterdir()):  # another process wrote it between the check and the lock
            raise RoteError(f"output directory {run_dir} already exists and is not empty; choose another --out")
        if resume and (done := finished_results([run_dir], [cfg])) is not None:
            log(f"the run in {run_dir} had finished (its checkpoint was left behind); nothing to train")
            return run_dir, done[0]
        return _train_logged(cfg, run_dir, dataset, data, device, log, progress, on_epoch, checkpoint_every,
                             save_model, parameters)


def _train_logged(cfg, run_dir, dataset, data, device, log, progress, on_epoch, checkpoint_every, save_model,
                  parameters):
    """The run's console lines around train_into: settings and data first, one line an epoch, the verdict."""
    env = {**environment(device, dataset), "model_parameters": parameters}
    log(f"rote {env['rote']}  torch {env['torch']}  python {env['python']}  device {env['device']}"
        f" ({env['threads']} threads)")
    log("settings:\n" + cfg.describe())
    part = f" (a random subset of the first {data.n_part}; membership.npz at the end)" if len(data.out_index) else ""
    log(f"data: {dataset.name} from {getattr(dataset, 'source', '?')}; training on {len(data.y_fit)} images{part}, "
        f"validating on the last {len(data.y_val)}, testing on {len(data.y_test)} with their true labels")
    log(f"labels: '{cfg.labels}' changed {int(data.changed.sum())} of {len(data.changed)} "
        f"({data.changed_fraction:.1%}); inputs: '{cfg.inputs}'")

    log(EPOCH_HEADER)

    def each_epoch(j: int, rec: EpochRecord):
        log(epoch_line(rec, cfg.epochs))
        if on_epoch is not None:
            on_epoch(rec)

    (res, result), = train_into([cfg], [data], [run_dir], env, device=device, on_epoch=each_epoch,
                                progress=progress, checkpoint_every=checkpoint_every, save_model=save_model, log=log)
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
