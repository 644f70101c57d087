"""Running a sweep into its store: the plan, the runs, the local executor, the estimate.

``run_sweep`` is the whole sweep as one call (the CLI's `rote sweep` is a thin
wrapper). Every executor, local or Ray, trains runs with ``train_records``
into temporary directories, and ``Store.land`` publishes each finished record
with one atomic rename (or records the error in failed/); the executors differ
only in where the training happens.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from rote.atomic import write_atomic
from rote.config import RunConfig, resolve_device
from rote.errors import ConfigError
from rote.experiments.grouping import group_runs
from rote.experiments.store import Store
from rote.experiments.sweep import Sweep


@functools.lru_cache(maxsize=None)  # per process: a worker loads each dataset once
def _dataset(name: str, data_dir):
    from rote.data.sources import load_dataset

    return load_dataset(name, data_dir=data_dir, log=lambda s: None)


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    store: Store
    todo: list[RunConfig]
    done: list[RunConfig]
    # {dataset: (classes, training images, image shape, test images)}, as _shape gives them
    shapes: dict = field(default_factory=dict)


def _shape(dataset: str, data_dir) -> tuple[int, int, tuple, int]:
    """(classes, training images, image shape, test images) of a dataset: from the registry, without reading data,
    so that a dry run works before the files are there; a user's npz file is read (it is small)."""
    from rote.data.registry import get_spec

    if dataset.startswith("npz:"):
        ds = _dataset(dataset, data_dir)
        return ds.classes, len(ds.y_train), tuple(ds.image_shape), len(ds.y_test)
    spec = get_spec(dataset)
    return spec.classes, spec.n_train, tuple(spec.image_shape), spec.n_test


def plan(sweep: Sweep, sweep_dir: Path, data_dir=None) -> Plan:
    """Check every run against its dataset and the store's place, then split into done and to-do;
    creates nothing."""
    from rote.models import check_model_name

    shapes = {name: _shape(name, data_dir) for name in {c.dataset for c in sweep.configs}}
    for name, n_train in {(c.dataset, c.n_train) for c in sweep.configs}:
        classes, n = shapes[name][:2]
        if not (classes <= n_train <= n):
            raise ConfigError(f"n_train={n_train} is outside [{classes}, {n}] for {name}")
    for model, dataset in sorted({(c.model, c.dataset) for c in sweep.configs}):
        classes, _, image_shape, _ = shapes[dataset]
        check_model_name(model, in_shape=image_shape, classes=classes, shape_known=True)
    store = Store(sweep_dir)
    store.check_writable()
    done_keys = store.done_keys()
    runs = {c.key(): c for c in sweep.configs}  # a run listed twice runs once
    return Plan(sweep, store, [c for k, c in runs.items() if k not in done_keys],
                [c for k, c in runs.items() if k in done_keys], shapes)


def _train_one(cfg: RunConfig, dest: Path, data_dir) -> dict:
    from rote.experiments.run import run

    from rote.experiments.run import RunInterrupted

    t0 = time.time()
    try:
        _, result = run(cfg, dest, dataset=_dataset(cfg.dataset, data_dir), log=lambda s: None)
    except RunInterrupted:  # Ctrl-C is the user stopping the sweep, not the run failing
        shutil.rmtree(dest, ignore_errors=True)
        raise KeyboardInterrupt from None
    except Exception as e:
        shutil.rmtree(dest, ignore_errors=True)
        return {"key": cfg.key(), "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "config": cfg.to_dict(), "host": os.uname().nodename}
    return {"key": cfg.key(), "status": "done", "outcome": result["outcome"], "seconds": time.time() - t0,
            "host": os.uname().nodename}


def train_records(cfg_dicts: list[dict], dests: list[Path], data_dir=None, threads: Optional[int] = None) -> list[dict]:
    """Train runs into ``dests`` (fresh directories), several compatible ones as one batched model.

    Every executor calls this, wherever the runs happen. Returns one
    {'key', 'status': done|failed, ...} per run: failures are returned, not
    raised, so one bad run never stops a sweep.
    """
    import torch

    from rote.experiments.run import run_group

    if threads:
        torch.set_num_threads(threads)
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    if len(cfgs) > 1:
        try:
            results = run_group(cfgs, dests, dataset=_dataset(cfgs[0].dataset, data_dir))
            return [{"key": c.key(), "status": "done", "outcome": r["outcome"], "host": os.uname().nodename}
                    for c, r in zip(cfgs, results)]
        except Exception:  # one at a time instead, so that a bad run is recorded on its own
            for d in dests:
                shutil.rmtree(d, ignore_errors=True)
    return [_train_one(c, d, data_dir) for c, d in zip(cfgs, dests)]


def execute_group(cfg_dicts: list[dict], store_root: str, data_dir=None, threads: Optional[int] = None) -> list[dict]:
    """Train runs (compatible ones together, as one batched model) into the store, on this machine.

    Safe to call twice for the same run, concurrently or after a crash: the
    first complete record wins and the other is discarded.
    """
    store = Store(Path(store_root))
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    skipped = [{"key": c.key(), "status": "skipped"} for c in cfgs if store.done(c.key())]
    cfgs = [c for c in cfgs if not store.done(c.key())]
    tmps = [store.temp_dir(c.key()) for c in cfgs]
    for t in tmps:
        shutil.rmtree(t, ignore_errors=True)
    try:
        outs = train_records([c.to_dict() for c in cfgs], tmps, data_dir, threads)
    except BaseException:  # Ctrl-C: the runs in flight are discarded, not failed; a rerun does them
        for t in tmps:
            shutil.rmtree(t, ignore_errors=True)
        raise
    for t, out in zip(tmps, outs):
        store.land(out, t)
    return skipped + outs


def _worker_init(parent: int, threads: int) -> None:
    """A worker process uses its share of the cores, and ends when the driver dies (even by SIGKILL)."""
    import signal

    import torch

    # Ctrl-C reaches the whole process group: the driver stops the workers itself, and a worker must never
    # turn it into a failed run
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_local(p: Plan, jobs: int, data_dir=None, on_result: Callable[[dict, int], None] = lambda r, running: None,
              group: int = 1, retries: int = 2, threads: Optional[int] = None) -> None:
    """Run the plan's to-do list here: in this process for jobs=1, else in a pool of processes.

    With group > 1, compatible runs are trained together as one batched model.
    ``on_result(outcome, runs still running)`` is called as each run ends. A worker process that dies
    (killed, out of memory) takes the runs in flight with it: they run again in a new pool, up to
    ``retries`` times, and are recorded as failed only then. Ctrl-C stops the workers at once; the runs
    in flight are discarded (a rerun does them) and KeyboardInterrupt is raised. ``threads`` per process
    (default: the free cores shared out, rote.threads).
    """
    from rote.threads import use_threads

    groups, left = group_runs(p.todo, group), len(p.todo)
    threads = use_threads(threads, jobs)
    if jobs <= 1:
        for g in groups:
            for r in execute_group([c.to_dict() for c in g], str(p.store.root), data_dir):
                left -= 1
                on_result(r, min(len(g), left))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    attempts = [0] * len(groups)
    queue = list(range(len(groups)))
    while queue:
        lost = []
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                   initargs=(os.getpid(), threads))
        try:
            futures = {pool.submit(execute_group, [c.to_dict() for c in groups[i]], str(p.store.root), data_dir,
                                   threads): i for i in queue}
            for f in as_completed(futures):
                try:
                    outs = f.result()
                except BrokenProcessPool:  # a worker died: every run in flight is lost with it
                    lost.append(futures[f])
                    continue
                for r in outs:
                    left -= 1
                    on_result(r, min(jobs * group, left))
        except BaseException:
            _stop_pool(pool)
            p.store.clean_stale()
            raise
        pool.shutdown(wait=True)
        p.store.clean_stale()  # the temporaries of the dead workers
        queue = []
        for i in sorted(lost):
            attempts[i] += 1
            if attempts[i] <= retries:
                queue.append(i)
                continue
            for c in groups[i]:
                out = {"key": c.key(), "status": "failed", "config": c.to_dict(),
                       "error": f"its worker process died {attempts[i]} time(s) (killed, or out of memory)"}
                p.store.land(out)
                left -= 1
                on_result(out, min(jobs * group, left))


def _stop_pool(pool) -> None:
    """Stop a process pool now: kill its workers and drop its queue, instead of draining it."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except OSError:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def start_store(p: Plan) -> int:
    """Create and lock the store, keep the sweep file beside it, move bad records aside and discard
    temporaries of killed runs (returns how many). The lock is held until ``run_sweep`` ends (or the process)."""
    p.store.create()
    p.store.lock()
    p.store.quarantine_bad()
    path = p.store.root / "sweep.yaml"
    if path.exists() and path.read_bytes() != p.sweep.source.encode():
        # settings may change: new keys are new runs, and old records stay valid for their own settings
        shutil.copy(path, p.store.root / f"sweep.{time.strftime('%Y%m%d-%H%M%S')}.yaml")
    write_atomic(path, p.sweep.source.encode())
    return p.store.clean_stale()


def parallelism(p: Plan, jobs: Optional[int] = None, group: Optional[int] = None,
                backend: str = "local") -> tuple[str, int, int]:
    """(device type, jobs, group) as run_sweep will use them: jobs default, on a CPU, to one process or one
    per core, whichever measured faster here (rote.experiments.packing), one on a GPU; group defaults to 32
    on a local GPU, else 1."""
    device = resolve_device(p.todo[0].device).type if p.todo else "cpu"
    group = group or (32 if device == "cuda" and backend == "local" else 1)
    if not jobs and device == "cpu" and backend == "local":
        from rote.experiments.packing import plan_jobs

        jobs = plan_jobs(p, group)  # measured once per machine and model kind, then cached
    return device, jobs or 1, group


def run_sweep(p: Plan, *, jobs: Optional[int] = None, group: Optional[int] = None, backend: str = "local",
              address: Optional[str] = None, retries: int = 2, data_dir=None, threads: Optional[int] = None,
              on_result: Callable[[dict, dict], None] = lambda r, counts: None,
              log: Callable[[str], None] = print) -> dict:
    """Run a plan's to-do list into its store (start_store first); returns the counts, as ``on_result`` gets them.

    ``jobs`` local processes (default: see ``parallelism``) of ``threads`` threads each or a Ray cluster;
    ``group`` runs per batched model (default: 32 on a local GPU, else 1). index.csv is rewritten as runs
    finish. Ctrl-C returns with counts['interrupted']: what finished is kept and indexed.
    """
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    stale = start_store(p)
    if stale:
        log(f"discarded {stale} unfinished run(s) left by an interrupted sweep; they run again")
    counts = {"done": 0, "failed": 0, "running": 0, "interrupted": False}
    device, jobs, group = parallelism(p, jobs, group, backend)

    def landed(r: dict, running: int) -> None:
        counts["failed" if r["status"] == "failed" else "done"] += 1
        counts["running"] = running
        if r["status"] == "done":
            p.store.write_index()
        on_result(r, counts)

    try:
        if backend == "ray" and p.todo:
            from rote.experiments.ray_backend import run_ray

            run_ray(p, address=address, data_dir=data_dir, retries=retries, on_result=landed, group=group,
                    gpu=device == "cuda")
        elif p.todo:
            run_local(p, jobs, data_dir, landed, group=group, retries=retries, threads=threads)
    except KeyboardInterrupt:
        counts["interrupted"] = True
    try:
        p.store.write_index()
    finally:
        p.store.unlock()
    return counts


# -- the time estimate ----------------------------------------------------------------------------------------

# Groups larger than this are timed at this size and scaled linearly (a pessimistic guess on a GPU).
CALIBRATE_MAX_GROUP = 8
# One calibration: warm-up steps, then repeats of timed steps; a repeat's figure is its median step.
CALIBRATE_WARMUP, CALIBRATE_REPEATS, CALIBRATE_STEPS = 3, 3, 6
# A step slower than this (seconds) after the warm-up is timed once per repeat: no long timings.
CALIBRATE_SLOW_STEP = 1.0
# With only the sweep file's expect_epochs, the high end allows this many times the expected epochs.
PRIOR_SPREAD = 1.5

_speeds: dict[tuple, "Speed"] = {}  # per process: each (model, shape, batch, layout, optimiser, group) timed once


@dataclass(frozen=True)
class Speed:
    """Seconds per training step of a group of K models (K = 1 for one run) and per evaluated image."""
    step: float  # the median repeat
    step_slow: float  # the mean of the slowest two repeats
    eval_image: float  # seconds to evaluate one image on every member, eval mode
    steps_timed: int


@dataclass(frozen=True)
class Estimate:
    """Wall-clock seconds for a plan's to-do list, as a range and a bound.

    ``low``: the typical epochs (the median of finished runs like it) at the median
    measured speed. ``high``: the upper quartile of those epochs at the slow speed
    (the slowest two of three timing repeats). ``bound``: every run uses its whole
    epoch budget, at the slow speed. low and high are None when the epochs are unknown.
    """
    low: Optional[float]
    high: Optional[float]
    bound: float
    epochs_from: str  # "from 12 finished runs", "expect_epochs: 40 in the sweep file", "unknown"
    speed_from: str  # "timed 18 steps of each model"
    note: str = ""  # how --jobs and groups were accounted for


def _speed_key(cfg: RunConfig, in_shape: tuple, classes: int, k: int, device) -> tuple:
    from rote.training.loop import memory_format

    layout = memory_format(cfg, device, stacked=k > 1) if len(in_shape) == 3 else None
    return (cfg.model, in_shape, classes, cfg.batch_size, str(layout), cfg.optimizer, cfg.loss, k, device.type)


def calibrate(cfg: RunConfig, in_shape: tuple, classes: int, k: int = 1, eval_batch: Optional[int] = None) -> Speed:
    """Time a group of k models (k <= CALIBRATE_MAX_GROUP) of this run's kind through the real training
    step: built as train_many builds them (Members, the run's layout, optimiser and loss), on random data of
    the real shape. Warm-up first, the device synchronised, repeats, medians. Cached per process."""
    import torch

    from rote.models import create_model
    from rote.training.loop import EVAL_BATCH, Members, memory_format

    device = resolve_device(cfg.device)
    key = _speed_key(cfg, tuple(in_shape), classes, k, device)
    if key in _speeds:
        return _speeds[key]
    layout = memory_format(cfg, device, stacked=k > 1) if len(in_shape) == 3 else torch.contiguous_format
    models = [create_model(cfg.model, in_shape=tuple(in_shape), classes=classes, dropout=cfg.dropout, init=cfg.init,
                           generator=torch.Generator().manual_seed(i)).to(device=device, memory_format=layout)
              for i in range(k)]
    members = Members(models, cfg)
    del models
    gen = torch.Generator().manual_seed(0)
    bs = cfg.batch_size

    def batch(n):  # (k, n, *in_shape), in the run's layout for one model, as train_many slices it
        x = torch.randn(k, n, *in_shape, generator=gen).to(device)
        if k == 1 and x.dim() == 5:
            x = x[0].contiguous(memory_format=layout).unsqueeze(0)
        return x

    x, y = batch(bs), torch.randint(0, classes, (k, bs), generator=gen).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        members.step(members.losses(members.forward(x), y))
        sync()
        return time.perf_counter() - t0

    members.train(True)
    warm = [step() for _ in range(CALIBRATE_WARMUP)]
    n_steps = 1 if warm[-1] > CALIBRATE_SLOW_STEP else CALIBRATE_STEPS
    repeats = sorted(float(np.median([step() for _ in range(n_steps)])) for _ in range(CALIBRATE_REPEATS))

    eb = eval_batch or min(EVAL_BATCH, 4 * bs)
    xe = batch(eb)
    members.train(False)
    with torch.inference_mode():
        times = []
        for _ in range(2):  # the first is the warm-up
            sync()
            t0 = time.perf_counter()
            members.forward(xe).argmax(-1)
            sync()
            times.append(time.perf_counter() - t0)
    speed = Speed(step=repeats[len(repeats) // 2], step_slow=float(np.mean(repeats[-2:])),
                  eval_image=times[-1] / eb, steps_timed=n_steps * CALIBRATE_REPEATS)
    _speeds[key] = speed
    return speed


def _what(c) -> tuple:
    """Runs whose epochs are pooled: the same model, training-set size and labels and inputs."""
    get = c.get if isinstance(c, dict) else lambda f, d=None: getattr(c, f, d)
    return get("model"), get("n_train"), get("labels"), get("inputs", "none")


def finished_epochs(p: Plan) -> dict[tuple, list[int]]:
    """{(model, n_train, labels, inputs): the epochs each finished run of that kind took}."""
    used: dict[tuple, list[int]] = {}
    for r in p.store.records():
        if r["result"].get("epochs"):
            used.setdefault(_what(r["config"]), []).append(int(r["result"]["epochs"]))
    return used


def estimate(p: Plan, *, jobs: Optional[int] = None, group: Optional[int] = None, backend: str = "local",
             data_dir=None) -> Estimate:
    """How long the plan's to-do list will take on this machine, as ``Estimate`` describes.

    Time per run (or group of runs trained together) = epochs x (steps per epoch x seconds per step
    + evaluated images x seconds per image), with the speeds from ``calibrate`` of that very group size
    and the epochs from finished runs of the same kind (else the sweep file's expect_epochs, else unknown).
    A group trains until its last member stops. Runs in parallel processes share the machine (its cores,
    or its one GPU), so --jobs is taken to give no speed-up.
    """
    from rote.data.prepare import input_shape

    device, jobs, group = parallelism(p, jobs, group, backend)
    shapes = p.shapes or {d: _shape(d, data_dir) for d in {c.dataset for c in p.todo}}
    used = finished_epochs(p)
    prior = p.sweep.expect_epochs
    n_from_runs = sum(len(used[k]) for k in {_what(c) for c in p.todo} if k in used)
    by_prior = 0
    low = high = bound = 0.0
    known = True
    steps_timed = 0
    for g in group_runs(p.todo, group):
        c0, k = g[0], len(g)
        classes, _, image_shape, n_test = shapes[c0.dataset]
        in_shape = input_shape(image_shape, c0.preprocess) if len(image_shape) == 3 else tuple(image_shape)
        kt = min(k, CALIBRATE_MAX_GROUP)
        sp = calibrate(c0, in_shape, classes, kt)
        steps_timed = max(steps_timed, sp.steps_timed)
        scale = k / kt  # a larger group is timed at kt members and scaled linearly
        n_fit = c0.n_train - c0.n_val
        steps = -(-n_fit // c0.batch_size)
        # images evaluated per epoch: the validation part every epoch, the training part every eval_every
        per_epoch_eval = c0.n_val + (n_fit / c0.eval_every if c0.eval_every else 0)
        once = n_fit + n_test  # the training part and the test set at the end

        def seconds(epochs: float, step: float, sp=sp, steps=steps, every=per_epoch_eval, once=once,
                    scale=scale) -> float:
            return scale * (epochs * (steps * step + every * sp.eval_image) + once * sp.eval_image)

        budget = max(c.epochs for c in g)
        bound += seconds(budget, sp.step_slow)
        typical, upper = [], []
        for c in g:
            seen = used.get(_what(c))
            if seen:
                typical.append(min(c.epochs, float(np.median(seen))))
                upper.append(min(c.epochs, float(np.percentile(seen, 75))))
            elif prior:
                by_prior += 1
                typical.append(min(c.epochs, prior))
                upper.append(min(c.epochs, PRIOR_SPREAD * prior))
            else:
                known = False
        if known:
            low += seconds(max(typical), sp.step)
            high += seconds(max(upper), sp.step_slow)
    if n_from_runs and by_prior:
        epochs_from = f"from {_plural(n_from_runs, 'finished run')}, else expect_epochs: {prior} in the sweep file"
    elif n_from_runs:
        epochs_from = f"from {_plural(n_from_runs, 'finished run')}"
    elif by_prior:
        epochs_from = f"expect_epochs: {prior} in the sweep file"
    else:
        epochs_from = "unknown"
    if not known:
        epochs_from = "unknown" if not (n_from_runs or by_prior) else epochs_from + ", unknown for some runs"
    what = "of each model" if group <= 1 else f"of each group (up to {min(group, CALIBRATE_MAX_GROUP)} models)"
    note = f"{jobs} processes share this machine: no speed-up counted" if jobs > 1 else ""
    if backend != "local":
        note = "timed on this machine; a cluster's workers divide it"
    return Estimate(low=low if known else None, high=high if known else None, bound=bound,
                    epochs_from=epochs_from, speed_from=f"timed {steps_timed} steps {what} on {device}", note=note)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
