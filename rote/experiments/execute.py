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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

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


def _shape(dataset: str, data_dir) -> tuple[int, int, tuple]:
    """(classes, training images, image shape) of a dataset: from the registry, without reading data,
    so that a dry run works before the files are there; a user's npz file is read (it is small)."""
    from rote.data.registry import get_spec

    if dataset.startswith("npz:"):
        ds = _dataset(dataset, data_dir)
        return ds.classes, len(ds.y_train), ds.image_shape
    spec = get_spec(dataset)
    return spec.classes, spec.n_train, spec.image_shape


def plan(sweep: Sweep, sweep_dir: Path, data_dir=None) -> Plan:
    """Check every run against its dataset and the store's place, then split into done and to-do;
    creates nothing."""
    from rote.models import check_model_name

    shapes = {name: _shape(name, data_dir) for name in {c.dataset for c in sweep.configs}}
    for name, n_train in {(c.dataset, c.n_train) for c in sweep.configs}:
        classes, n, _ = shapes[name]
        if not (classes <= n_train <= n):
            raise ConfigError(f"n_train={n_train} is outside [{classes}, {n}] for {name}")
    for model, dataset in sorted({(c.model, c.dataset) for c in sweep.configs}):
        classes, _, image_shape = shapes[dataset]
        check_model_name(model, in_shape=image_shape, classes=classes, shape_known=True)
    store = Store(sweep_dir)
    store.check_writable()
    done_keys = store.done_keys()
    runs = {c.key(): c for c in sweep.configs}  # a run listed twice runs once
    return Plan(sweep, store, [c for k, c in runs.items() if k not in done_keys],
                [c for k, c in runs.items() if k in done_keys])


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
              group: int = 1, retries: int = 2) -> None:
    """Run the plan's to-do list here: in this process for jobs=1, else in a pool of processes.

    With group > 1, compatible runs are trained together as one batched model.
    ``on_result(outcome, runs still running)`` is called as each run ends. A worker process that dies
    (killed, out of memory) takes the runs in flight with it: they run again in a new pool, up to
    ``retries`` times, and are recorded as failed only then. Ctrl-C stops the workers at once; the runs
    in flight are discarded (a rerun does them) and KeyboardInterrupt is raised.
    """
    groups, left = group_runs(p.todo, group), len(p.todo)
    if jobs <= 1:
        for g in groups:
            for r in execute_group([c.to_dict() for c in g], str(p.store.root), data_dir):
                left -= 1
                on_result(r, min(len(g), left))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // jobs)
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


def run_sweep(p: Plan, *, jobs: Optional[int] = None, group: Optional[int] = None, backend: str = "local",
              address: Optional[str] = None, retries: int = 2, data_dir=None,
              on_result: Callable[[dict, dict], None] = lambda r, counts: None,
              log: Callable[[str], None] = print) -> dict:
    """Run a plan's to-do list into its store (start_store first); returns the counts, as ``on_result`` gets them.

    ``jobs`` local processes (default: one per two cores on a CPU, one on a GPU) or a Ray cluster;
    ``group`` runs per batched model (default: 32 on a local GPU, else 1). index.csv is rewritten as runs
    finish. Ctrl-C returns with counts['interrupted']: what finished is kept and indexed.
    """
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    stale = start_store(p)
    if stale:
        log(f"discarded {stale} unfinished run(s) left by an interrupted sweep; they run again")
    counts = {"done": 0, "failed": 0, "running": 0, "interrupted": False}
    device = resolve_device(p.todo[0].device).type if p.todo else "cpu"
    jobs = jobs or (max(1, (os.cpu_count() or 1) // 2) if device == "cpu" else 1)
    group = group or (32 if device == "cuda" and backend == "local" else 1)

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
            run_local(p, jobs, data_dir, landed, group=group, retries=retries)
    except KeyboardInterrupt:
        counts["interrupted"] = True
    try:
        p.store.write_index()
    finally:
        p.store.unlock()
    return counts


def estimate_seconds(p: Plan, data_dir=None) -> tuple[float, Optional[float], str]:
    """(upper bound, typical or None, where the speed came from) for the time left.

    The bound assumes every run uses all its epochs. The typical figure
    uses the epochs that finished runs of the same model and training-set
    size actually took (they stop once they memorise or collapse). Speeds
    come from the images/s of finished runs of the same model when the store
    has them, else from a short timing of a few training steps per model.
    On a CPU, more processes share the same cores, so neither shrinks with
    --jobs.
    """
    rates: dict[tuple, float] = {}
    used: dict[tuple, list[float]] = {}  # fraction of the epoch budget that finished runs used
    for r in p.store.records():
        c, res = r["config"], r["result"]
        if res.get("images_per_second"):
            rates.setdefault((c["model"], c["batch_size"]), res["images_per_second"])
        if res.get("epochs") and c.get("epochs"):
            used.setdefault((c["model"], c["n_train"]), []).append(res["epochs"] / c["epochs"])
    source = "finished runs"
    for c in p.todo:
        k = (c.model, c.batch_size)
        if k not in rates:
            rates[k] = _calibrate(c, data_dir)
            source = "a short timing of each model"
    upper, typical, known = 0.0, 0.0, True
    for c in p.todo:
        seconds = (c.n_train - c.n_val) * c.epochs / rates[(c.model, c.batch_size)]
        upper += seconds
        fractions = used.get((c.model, c.n_train))
        if fractions:
            typical += seconds * sum(fractions) / len(fractions)
        else:
            known = False
    return upper, (typical if known else None), source


def _calibrate(cfg: RunConfig, data_dir=None) -> float:
    """Images per second of a few training steps of this model on random data."""
    import torch
    import torch.nn.functional as F

    from rote.models import create_model

    device = resolve_device(cfg.device)
    spec = _dataset(cfg.dataset, data_dir)  # image_shape and classes, as a spec has them
    model = create_model(cfg.model, in_shape=spec.image_shape, classes=spec.classes,
                         generator=torch.Generator().manual_seed(0)).to(device)
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(cfg.batch_size, *spec.image_shape, device=device)
    y = torch.randint(0, spec.classes, (cfg.batch_size,), device=device)
    t = 0.0
    for i in range(8):  # two steps to warm up, six timed
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= 2:
            t += time.perf_counter() - t0
    return 6 * cfg.batch_size / t
