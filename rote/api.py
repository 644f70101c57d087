"""The Python API: ``rote.run``, ``rote.load``, ``rote.config`` (re-exported by ``rote``).

Thin calls into the library, as the CLI's commands are; nothing here imports
torch until a run starts, so ``import rote`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from rote.config import RunConfig
from rote.errors import ConfigError, RoteError

PathLike = Union[str, Path]


@dataclass(frozen=True)
class RunResult:
    """One finished run: its settings, its per-epoch history, result.json and its directory."""

    config: RunConfig
    history: Any  # pandas.DataFrame of history.csv when pandas is importable, else {column: [values]}
    result: dict  # result.json (schema rote.experiments.record.RESULT_SCHEMA)
    dir: Path
    model: Any = None  # the trained torch.nn.Module (eval mode, CPU), when run with save_model=True

    def __repr__(self) -> str:
        r = self.result
        return (f"RunResult({r.get('outcome')}: train acc {r.get('train_acc', float('nan')):.2%}, test acc "
                f"{r.get('test_acc', float('nan')):.2%} after {r.get('epochs')} epoch(s); dir={str(self.dir)!r})")


def config(**settings) -> RunConfig:
    """A RunConfig from the defaults (the seed experiment) and ``settings``, checked now.

    Keys are the config names (``n_train``, ``labels``, ``model`` ...); an
    unknown key or a bad value raises ``rote.errors.ConfigError`` here, not
    when the run starts.
    """
    return RunConfig.from_dict(settings)


def run(cfg: Optional[RunConfig] = None, *, out: Optional[PathLike] = None, data_dir: Optional[PathLike] = None,
        quiet: bool = True, on_epoch: Optional[Callable] = None, save_model: bool = False,
        checkpoint_every: Optional[float] = None, **settings) -> RunResult:
    """Train one model and record it, as ``rote run`` does; return a RunResult.

    ``cfg`` (from ``rote.config``) and/or any run setting as a keyword
    (``rote.run(n_train=500, labels="partial:0.4", seed=1)``); keywords
    override cfg. ``out`` is the run directory (default: runs/<time>-<id>/),
    ``data_dir`` where the dataset's files are, ``quiet=False`` prints what
    ``rote run`` prints. ``on_epoch(record)`` is called after each epoch with
    its rote.training.records.EpochRecord. ``save_model=True`` keeps the final weights in model.pt and
    returns the model in RunResult.model. ``checkpoint_every``: seconds between checkpoints (0: every
    epoch; default 600); an interrupted run goes on with ``rote run --resume DIR``.
    """
    from rote.experiments.run import load_model, run as run_one

    if cfg is not None and not isinstance(cfg, RunConfig):
        raise ConfigError(f"rote.run takes a RunConfig (from rote.config) or settings as keywords, got {cfg!r}")
    cfg = RunConfig.from_dict(settings, base=cfg) if settings or cfg is None else cfg
    run_dir, result = run_one(cfg, None if out is None else Path(out),
                              data_dir=None if data_dir is None else str(data_dir),
                              log=(lambda s: None) if quiet else print, on_epoch=on_epoch,
                              checkpoint_every=checkpoint_every, save_model=save_model)
    return RunResult(cfg, _history(Path(run_dir)), result, Path(run_dir),
                     load_model(Path(run_dir)) if save_model else None)


def load(store: PathLike):
    """(runs, histories) of a sweep's store (or of one run directory), as pandas DataFrames.

    runs: one row per finished run, the columns of index.csv (key, every
    setting, the result's numbers). histories: every run's history.csv as one
    long frame, with a ``key`` column beside ``epoch`` and the metrics.
    """
    try:
        import pandas as pd
    except ImportError:
        raise RoteError("rote.load needs pandas: pip install pandas") from None
    import io

    from rote.experiments.record import CONFIG, HISTORY, history_frame, index_csv, read_record
    from rote.experiments.store import Store

    root = Path(store)
    if (root / CONFIG).is_file():  # one run directory
        records = [read_record(root)]
    else:
        s = Store(root)
        if not s.runs.is_dir():
            raise RoteError(f"{root} is neither a sweep's store (with runs/) nor a run directory (with {CONFIG})")
        records = list(s.records())
    runs = pd.read_csv(io.StringIO(index_csv(records)))
    frames = []
    for r in records:
        if r.has(HISTORY):
            h = history_frame(r.dir)
            h.insert(0, "key", r.key)
            frames.append(h)
    histories = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["key", "epoch"])
    return runs, histories


def _history(run_dir: Path):
    from rote.experiments.record import history_frame, read_history

    try:
        return history_frame(run_dir)
    except ImportError:  # no pandas: the columns as lists
        return read_history(run_dir)
