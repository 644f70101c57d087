"""The Python API: ``rote.run``, ``rote.sweep``, ``rote.load``, ``rote.config`` (re-exported by ``rote``).

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
        from rote.training.metrics import outcome_word

        r = self.result
        return (f"RunResult({outcome_word(r.get('outcome'))}: train acc {r.get('train_acc', float('nan')):.2%}, test acc "
                f"{r.get('test_acc', float('nan')):.2%} after {r.get('epochs')} epoch(s); dir={str(self.dir)!r})")


def config(**settings) -> RunConfig:
    """A RunConfig from the defaults (the seed experiment) and ``settings``, checked now.

    Keys are the config names (``n_train``, ``labels``, ``model`` ...); an
    unknown key or a bad value raises ``rote.errors.ConfigError`` here, not
    when the run starts.
    """
    return RunConfig.from_dict(settings)


def _in_python_words(e: RoteError) -> RoteError:
    """The library's errors advise the CLI's --out; from Python the argument is out=."""
    text = str(e).replace("another --out", "another out=").replace("use another --out", "use another out=")
    return type(e)(text) if text != str(e) else e


def _set_aside(path: Path, what: str) -> Optional[Path]:
    """Move an existing record out of the way (overwrite=True); returns where, to drop or restore later.

    Only a directory rote wrote is replaced, never an arbitrary one such as out=".".
    """
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    if not path.is_dir() or not any((path / marker).exists() for marker in what.split()):
        raise RoteError(f"out={str(path)!r} exists and is not a rote record (no {' or '.join(what.split())}); "
                        f"overwrite=True replaces only those: pass another out=")
    aside = path.with_name(f".{path.name}.replaced")
    if aside.exists():
        import shutil

        shutil.rmtree(aside)
    path.rename(aside)
    return aside


def _finish_aside(aside: Optional[Path], path: Path, ok: bool) -> None:
    """Drop the old record once the new one stands; put it back when nothing new was written."""
    import shutil

    if aside is None:
        return
    if ok or path.exists():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.rename(path)


def run(cfg: Optional[RunConfig] = None, *, out: Optional[PathLike] = None, data_dir: Optional[PathLike] = None,
        quiet: bool = True, on_epoch: Optional[Callable] = None, save_model: bool = False,
        checkpoint_every: Optional[float] = None, overwrite: bool = False, threads: Optional[int] = None,
        **settings) -> RunResult:
    """Train one model and record it, as ``rote run`` does; return a RunResult.

    ``cfg`` (from ``rote.config``) and/or any run setting as a keyword
    (``rote.run(n_train=500, labels="partial:0.4", seed=1)``); keywords
    override cfg. ``out`` is the run directory (default: runs/<time>-<id>/),
    ``data_dir`` where the dataset's files are, ``quiet=False`` prints what
    ``rote run`` prints. ``on_epoch(record)`` is called after each epoch with
    its rote.training.records.EpochRecord. ``save_model=True`` keeps the final weights in model.pt and
    returns the model in RunResult.model. ``checkpoint_every``: seconds between checkpoints (0: every
    epoch; default 600); an interrupted run goes on with ``rote run --resume DIR``. A run never writes
    into another's directory: an existing ``out`` is an error unless ``overwrite=True``, which replaces
    it (only a run directory, one with config.json). ``threads``: CPU threads for the run, else
    OMP_NUM_THREADS when set, else rote's rule, as `rote run` chooses them; the caller's count is restored
    afterwards.
    """
    from rote.config import identify
    from rote.experiments.run import load_model, run as run_one

    if cfg is not None and not isinstance(cfg, RunConfig):
        raise ConfigError(f"rote.run takes a RunConfig (from rote.config) or settings as keywords, got {cfg!r}")
    cfg = identify(RunConfig.from_dict(settings, base=cfg) if settings or cfg is None else cfg)
    out = None if out is None else Path(out)
    if out is not None and out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise RoteError(f"out={str(out)!r} already exists and is not empty; pass another out=, or overwrite=True "
                        f"to replace it")
    import torch

    from rote.experiments.run import run_threads

    _check_sweep_options(jobs=None, group=None, retries=0, backend="local", threads=threads, what="rote.run")
    aside = _set_aside(out, "config.json") if out is not None and overwrite else None
    ok = False
    callers = torch.get_num_threads()
    try:
        run_threads(cfg, threads, data_dir, warn=(lambda s: None) if quiet else print)
        run_dir, result = run_one(cfg, out, data_dir=None if data_dir is None else str(data_dir),
                                  log=(lambda s: None) if quiet else print, on_epoch=on_epoch,
                                  checkpoint_every=checkpoint_every, save_model=save_model)
        ok = True
    except RoteError as e:
        raise _in_python_words(e) from None
    finally:
        torch.set_num_threads(callers)
        if out is not None:
            _finish_aside(aside, out, ok)
    return RunResult(cfg, _history(Path(run_dir)), result, Path(run_dir),
                     load_model(Path(run_dir)) if save_model else None)


@dataclass(frozen=True)
class SweepResult:
    """A sweep's store after ``rote.sweep``: where it is and what happened to its runs this time."""

    dir: Path
    runs: list  # the keys of the sweep's runs (each names dir/runs/KEY once finished)
    already: list  # the keys of those finished before this call (kept, not redone)
    done: list  # the keys of those finished by this call
    failed: list  # the keys of those that failed in this call (described in dir/failed/; call again to retry)

    def load(self):
        """(runs, histories) of the store, as ``rote.load`` gives them."""
        return load(self.dir)


def _check_sweep_options(*, jobs, group, retries, backend, threads=None, what="rote.sweep") -> None:
    """rote.sweep's (and rote.run's) options, checked as the CLI checks its flags, before a store is made."""
    for name, v, least in (("jobs", jobs, 1), ("group", group, 1), ("retries", retries, 0), ("threads", threads, 1)):
        if v is None and name != "retries":
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise ConfigError(f"{what}({name}={v!r}): {name} must be a whole number >= {least}"
                              + (" or None (rote's default)" if name != "retries" else ""))
    if backend not in ("local", "ray"):
        raise ConfigError(f"{what}(backend={backend!r}): backend must be 'local' or 'ray'")


def sweep(file_or_dict: Union[PathLike, dict], *, out: Optional[PathLike] = None, jobs: Optional[int] = None,
          group: Optional[int] = None, backend: str = "local", address: Optional[str] = None, retries: int = 2,
          data_dir: Optional[PathLike] = None, progress: bool = False, overwrite: bool = False,
          tensorboard: Optional[PathLike] = None, save_model: Optional[bool] = None,
          threads: Optional[int] = None) -> SweepResult:
    """Run a sweep into its store, as ``rote sweep`` does; return a SweepResult.

    ``file_or_dict``: a sweep file's path, a shipped study's name
    (``rote.sweep("seed-quick")``), or the file's content as a dict
    (``{"name": ..., "base": {...}, "grid": {...}, "seeds": 3}``; see
    ``rote sweep --help``). ``out`` is the store (default: sweeps/<name>/).
    Calling again resumes: finished runs are kept, none is run twice.
    ``overwrite=True`` deletes an existing store first (only a sweep's
    store) and starts afresh. ``progress=True`` shows a progress bar, in a
    notebook as in a terminal; ``jobs``, ``group``, ``backend``, ``address``,
    ``retries`` are `rote sweep`'s options of the same names; ``save_model=True`` keeps every run's final
    weights (model.pt; default: the sweep file's ``save_model``); ``threads`` per process (default: as `rote
    sweep`: OMP_NUM_THREADS when set, else the cores shared out).
    """
    from rote.experiments import execute
    from rote.experiments.studies import resolve_study
    from rote.experiments.sweep import load_sweep, parse_sweep

    try:
        if isinstance(file_or_dict, dict):
            import yaml

            spec = dict(file_or_dict)
            spec.setdefault("name", "sweep")
            sw = parse_sweep(yaml.safe_dump(spec, sort_keys=False), where="<the dict given to rote.sweep>")
        elif isinstance(file_or_dict, (str, Path)):
            sw = load_sweep(resolve_study(str(file_or_dict)))
        else:
            raise ConfigError(f"rote.sweep takes a sweep file's path, a study's name or a dict, got {file_or_dict!r}")
        _check_sweep_options(jobs=jobs, group=group, retries=retries, backend=backend, threads=threads)
        if tensorboard is not None:
            from rote.experiments.tracking import require_tensorboard

            require_tensorboard(tensorboard)
        root = Path(out) if out is not None else Path("sweeps") / sw.name
        aside = _set_aside(root, "runs sweep.yaml index.csv") if overwrite else None
        ok = False
        try:
            p = execute.plan(sw, root, data_dir=None if data_dir is None else str(data_dir))
            tb_names = {}
            if tensorboard is not None:
                from rote.experiments.tracking import condition_words

                tb_names = {c.key(): condition_words(c) for c in sw.configs}
            from tqdm.auto import tqdm

            bar = tqdm(total=len(p.todo), unit="run", disable=not progress or not p.todo)

            landed = {"done": [], "failed": []}

            def on_result(r, counts):
                if r["status"] in landed:
                    landed[r["status"]].append(r["key"])
                if tensorboard is not None and r["status"] == "done":
                    from rote.experiments.tracking import log_record

                    log_record(Path(tensorboard) / f"{tb_names[r['key']]}_{r['key'][:8]}",
                               p.store.record_dir(r["key"]))
                bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=False)
                bar.update(1)

            counts = execute.run_sweep(p, jobs=jobs, group=group, backend=backend, address=address,
                                       retries=retries, data_dir=None if data_dir is None else str(data_dir),
                                       on_result=on_result, log=bar.write if progress else (lambda s: None),
                                       save_model=save_model, threads=threads)
            bar.close()
            ok = True
        finally:
            _finish_aside(aside, root, ok)
    except RoteError as e:
        raise _in_python_words(e) from None
    if counts["interrupted"]:
        raise KeyboardInterrupt
    return SweepResult(root, list(dict.fromkeys(c.key() for c in sw.configs)), [c.key() for c in p.done],
                       landed["done"], landed["failed"])


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


def suspects(path: PathLike, *, score: Optional[str] = None, top: int = 24, out: Optional[PathLike] = None,
             quiet: bool = True):
    """The training examples most likely mislabelled, as ``rote suspects`` writes them; a pandas DataFrame.

    ``path``: a run directory or a store; ``score``: a scores.csv column to rank by (default
    ``correctness``: rote.analysis.suspects says why). Writes suspects.csv and suspects.png (into ``out``;
    default the run directory, or STORE/suspects/KEY/) and returns the ranking, most suspicious first: rank,
    index, given_label, believed_label (the class predicted most often; runs recorded before it was kept lack
    it), the score, and true_label and changed where rote changed the labels itself; for a store, one frame
    with a ``key`` column.
    """
    import pandas as pd

    from rote.analysis.suspects import DEFAULT_SCORE
    from rote.reporting.suspects import suspects as write

    try:
        paths = write(Path(path), out, score=score or DEFAULT_SCORE, top=top,
                      log=(lambda s: None) if quiet else print)
    except RoteError as e:
        raise _in_python_words(e) from None
    frames = [pd.read_csv(p) for p in paths]
    if len(paths) == 1 and (Path(path) / "config.json").is_file():
        return frames[0]
    return pd.concat([f.assign(key=p.parent.name) for f, p in zip(frames, paths)], ignore_index=True)
