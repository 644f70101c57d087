"""Running a sweep into its store: the local executor, and the sweep as one call.

``run_sweep`` is the whole sweep as one call (the CLI's `rote sweep` is a thin
wrapper). Every executor, local or Ray, trains runs with
``rote.experiments.trainer.train_records`` into temporary directories, and
``Store.land`` publishes each finished record with one atomic rename (or
records the error in failed/); the executors differ only in where the
training happens. The plan is rote.experiments.plan, the time estimate
rote.experiments.estimate.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from rote.atomic import write_atomic
from rote.config import RunConfig
from rote.errors import ConfigError
from rote.interrupt import EXIT_TERMINATED, Terminated
from rote.experiments.grouping import group_runs
from rote.experiments.record import CHECKPOINT
from rote.experiments.plan import Plan, parallelism, plan, step_macs  # noqa: F401  (plan: the CLI's first call)
from rote.experiments.store import Store
from rote.experiments.trainer import train_records


def execute_group(cfgs: list[RunConfig], store_root: str, data_dir=None, threads: Optional[int] = None,
                  checkpoint_every: Optional[float] = None, save_model: bool = False) -> list[dict]:
    """Train runs (compatible ones together, as one batched model) into the store, on this machine.

    Safe to call twice for the same run, concurrently or after a crash: the
    first complete record wins and the other is discarded. A run that a killed
    or interrupted process left with a checkpoint resumes from it.
    """
    store = Store(Path(store_root))
    skipped = [{"key": c.key(), "status": "skipped"} for c in cfgs if store.done(c.key())]
    cfgs = [c for c in cfgs if not store.done(c.key())]
    tmps = [store.adopt(c.key()) for c in cfgs]
    for t in tmps:  # claimed now, under this process's name: if the process dies, the driver knows what it held
        t.mkdir(parents=True, exist_ok=True)
    try:
        outs = train_records(cfgs, tmps, data_dir, threads, checkpoint_every, save_model)
    except BaseException:  # Ctrl-C, SIGTERM: not failed; a rerun resumes what kept a checkpoint, redoes the rest
        for t in tmps:
            if not (t / CHECKPOINT).is_file():
                shutil.rmtree(t, ignore_errors=True)
        raise
    for t, out in zip(tmps, outs):
        store.land(out, t)
    return skipped + outs


_busy = False  # in a pool's worker: is it training runs now?


def _execute_sent(cfg_dicts: list[dict], store_root: str, data_dir=None, threads: Optional[int] = None,
                  checkpoint_every: Optional[float] = None, save_model: bool = False) -> list[dict]:
    """execute_group in a pool's worker: the settings cross the process boundary as plain dicts. SIGTERM
    (the driver stopping, or the pool stopping the others when one worker died) checkpoints the runs and
    ends the worker with EXIT_TERMINATED, which tells the driver it did not die of its own runs."""
    global _busy
    _busy = True
    try:
        return execute_group([RunConfig.from_dict(d) for d in cfg_dicts], store_root, data_dir, threads,
                             checkpoint_every, save_model)
    except Terminated:
        os._exit(EXIT_TERMINATED)
    finally:
        _busy = False


def _worker_sigterm(signum, frame) -> None:
    import signal

    if not _busy:  # idle: nothing to keep
        os._exit(EXIT_TERMINATED)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second must not cut the checkpoint short
    raise Terminated()


def _worker_init(parent: int, threads: int) -> None:
    """A worker process uses its share of the cores, and ends when the driver dies (even by SIGKILL)."""
    import signal

    import torch

    # Ctrl-C reaches the whole process group: the driver stops the workers itself (with SIGTERM, on which
    # a worker checkpoints its runs and ends), and a worker must never turn it into a failed run
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    torch.set_num_threads(threads)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_local(p: Plan, jobs: int, data_dir=None, on_result: Callable[[dict, int], None] = lambda r, running: None,
              group: int = 1, retries: int = 2, checkpoint_every: Optional[float] = None,
              threads: Optional[int] = None, save_model: bool = False) -> None:
    """Run the plan's to-do list here: in this process for jobs=1, else in a pool of processes.

    With group > 1, compatible runs are trained together as one batched model.
    ``on_result(outcome, runs still running)`` is called as each run ends. A worker process that dies
    (killed, out of memory) breaks the pool, which stops the other workers (they checkpoint their runs):
    every run in flight runs again in a new pool, resuming where it can, but only the runs the dead
    worker held are charged an attempt; those are recorded as failed after ``retries`` retries. Ctrl-C
    stops the workers at once; the runs in flight keep their checkpoints (a rerun resumes them) and
    KeyboardInterrupt is raised. ``threads`` per process
    (default: the usable cores shared out, rote.threads).
    """
    from rote.threads import use_threads

    groups, left = group_runs(p.todo, group), len(p.todo)
    threads = use_threads(threads, jobs, step_macs=step_macs(p.todo, p.shapes, group))
    if jobs <= 1:
        for g in groups:
            for r in execute_group(g, str(p.store.root), data_dir, checkpoint_every=checkpoint_every,
                                   save_model=save_model):
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
        workers: dict = {}  # pid -> process, to learn afterwards how each ended
        try:
            futures = {pool.submit(_execute_sent, [c.to_dict() for c in groups[i]], str(p.store.root), data_dir,
                                   threads, checkpoint_every, save_model): i for i in queue}
            workers.update(getattr(pool, "_processes", None) or {})
            for f in as_completed(futures):
                workers.update(getattr(pool, "_processes", None) or {})
                try:
                    outs = f.result()
                except BrokenProcessPool:  # a worker died: the pool is gone, and every run in flight with it
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
        charged = _culprits(p.store, groups, lost, workers)
        p.store.clean_stale()  # the temporaries of the dead workers (those with a checkpoint stay, to resume)
        queue = []
        for i in sorted(lost):
            attempts[i] += i in charged
            if attempts[i] <= retries:
                queue.append(i)
                continue
            for c in groups[i]:
                out = {"key": c.key(), "status": "failed", "config": c.to_dict(),
                       "error": f"its worker process died {attempts[i]} time(s) (killed, or out of memory)"}
                p.store.land(out)
                left -= 1
                on_result(out, min(jobs * group, left))


def _culprits(store: Store, groups: list, lost: list[int], workers: dict) -> set[int]:
    """Which of the lost groups a worker that died of its own held (not one the pool stopped with SIGTERM):
    found by the pid in their temporary directories' names. All of them when none can be told apart (a
    worker that died before its run made a directory), so that a run that always kills its worker still
    ends as failed."""
    import signal

    dead = {pid for pid, proc in workers.items()
            if proc.exitcode not in (None, 0, EXIT_TERMINATED, -signal.SIGTERM)}
    held = {i for i in lost if store.owners([c.key() for c in groups[i]]) & dead}
    return held or set(lost)


# Seconds a worker gets, after SIGTERM, to write its runs' checkpoints before it is killed.
STOP_GRACE = 30.0


def _stop_pool(pool) -> None:
    """Stop a process pool now, instead of draining it: drop its queue, ask its workers to end (SIGTERM: each
    checkpoints the runs it trains), and kill those still there after STOP_GRACE seconds."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        try:
            proc.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
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
              address: Optional[str] = None, retries: int = 2, data_dir=None, threads: Optional[int] = None,
              on_result: Callable[[dict, dict], None] = lambda r, counts: None,
              log: Callable[[str], None] = print, checkpoint_every: Optional[float] = None,
              save_model: Optional[bool] = None) -> dict:
    """Run a plan's to-do list into its store (start_store first); returns the counts, as ``on_result`` gets them.

    ``jobs`` local processes (default: see ``parallelism``) of ``threads`` threads each or a Ray cluster;
    ``group`` runs per batched model (default: 32 on a local GPU, else 1). index.csv is rewritten as runs
    finish. Ctrl-C or SIGTERM returns with counts['interrupted'] (and counts['terminated'] for SIGTERM):
    what finished is kept and indexed, the runs in flight keep checkpoints that the next sweep resumes from.
    ``checkpoint_every``: seconds between the runs' checkpoints (0: every epoch; default
    rote.training.checkpoint.DEFAULT_INTERVAL). ``save_model``: keep each run's final weights (model.pt);
    default: the sweep file's ``save_model``.
    """
    if save_model is None:
        save_model = p.sweep.save_model
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    stale = start_store(p)
    if stale:
        log(f"discarded {stale} unfinished run(s) left by an interrupted sweep; they run again")
    resumable = p.store.resumable()
    if resumable:
        log(f"{resumable} unfinished run(s) left by an interrupted sweep resume from their checkpoints")
    counts = {"done": 0, "failed": 0, "running": 0, "interrupted": False, "terminated": False}
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
                    gpu=device == "cuda", checkpoint_every=checkpoint_every, save_model=save_model)
        elif p.todo:
            run_local(p, jobs, data_dir, landed, group=group, retries=retries, checkpoint_every=checkpoint_every,
                      threads=threads, save_model=save_model)
    except KeyboardInterrupt as e:
        counts["interrupted"], counts["terminated"] = True, isinstance(e, Terminated)
    try:
        p.store.write_index()
    finally:
        p.store.unlock()
    return counts


