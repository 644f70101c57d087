"""Sweeps on a Ray cluster. The only module that imports ray (`pip install 'rote-memorization[ray]'`).

Each group of runs (often one run) is a Ray task that asks for the CPUs, or
the GPU, one run needs. The task trains into a scratch directory on whichever
node it lands on and sends the finished records' files back; the driver puts
them into the store with ``Store.land``, as the local executor does. So the
store needs no shared filesystem, a record exists only once it is complete,
and stopping the driver, killing a worker or losing a node loses at most the
runs in flight: Ray retries a task whose worker or node died (``retries``
times), and a run that still fails is recorded under ``failed/`` with its
error. Rerunning the sweep skips every finished run.

Checkpoints go the same way: a worker sends each checkpoint its runs write to
a small keeper actor, the driver writes them into the store's temporary
directories (as the local executor's runs do), and a task, retried or started
by a later sweep, begins from the keeper's latest checkpoint.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Optional

from rote.config import RunConfig
from rote.errors import RoteError
from rote.atomic import write_atomic
from rote.experiments.grouping import group_runs
from rote.experiments.record import CHECKPOINT
from rote.experiments.trainer import train_records

# Seconds between a worker's looks for a new checkpoint to send to the driver.
SEND_EVERY = 2.0
from rote.experiments.scratch import make_scratch


class Keeper:
    """A Ray actor between the workers and the driver: the latest checkpoint of each group (by its first key)."""

    def __init__(self, start: dict):
        self.latest, self.new = dict(start), {}

    def put(self, key: str, blob: bytes) -> None:
        self.latest[key] = self.new[key] = blob

    def get(self, key: str):
        return self.latest.get(key)

    def take(self) -> dict:
        new, self.new = self.new, {}
        return new


def _send_checkpoints(path: Path, key: str, keeper, stop: threading.Event) -> None:
    """Send each new checkpoint file at ``path`` to the keeper (it is replaced atomically: read it whole)."""
    seen = None
    while True:
        stopping = stop.wait(SEND_EVERY)
        try:
            stamp = path.stat().st_mtime_ns
            if stamp != seen:
                keeper.put.remote(key, path.read_bytes())
                seen = stamp
        except OSError:
            pass
        if stopping:
            return


def train_remote(cfg_dicts: list[dict], data_dir, threads: int, keeper=None,
                 checkpoint_every: Optional[float] = None, save_model: bool = False) -> list[dict]:
    """Runs on a Ray worker: train a group of runs in scratch directories, return their outcomes and files.
    The settings cross to the worker as plain dicts. With a keeper: start from its checkpoint of this group
    and send it each new one."""
    import ray

    scratch = make_scratch("rote-")  # named by this worker, so the next one removes it if this one is killed
    stop = threading.Event()
    try:
        dests = [scratch / f"run{i}" for i in range(len(cfg_dicts))]
        cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
        if keeper is not None:
            blob = ray.get(keeper.get.remote(cfgs[0].key()))
            if blob:
                write_atomic(dests[0] / CHECKPOINT, blob)
            threading.Thread(target=_send_checkpoints, args=(dests[0] / CHECKPOINT, cfgs[0].key(), keeper, stop),
                             daemon=True).start()
        outs = train_records(cfgs, dests, data_dir=data_dir, threads=threads, checkpoint_every=checkpoint_every,
                             save_model=save_model)
        for out, dest in zip(outs, dests):
            if out["status"] == "done":
                out["files"] = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
        return outs
    finally:
        stop.set()
        shutil.rmtree(scratch, ignore_errors=True)


def run_ray(plan, *, address=None, data_dir=None, retries: int = 2, group: int = 1, gpu: bool = False,
            on_result: Callable[[dict, int], None] = lambda r, running: None,
            checkpoint_every: Optional[float] = None, save_model: bool = False) -> None:
    """Run the plan's to-do list on a Ray cluster (a local one without ``address``), one task per group.

    ``gpu``: each task asks for one GPU. ``on_result(outcome, runs still running)`` is called as each run lands.
    """
    try:
        import ray
    except ImportError:
        raise RoteError("the Ray backend needs Ray: pip install 'rote-memorization[ray]' (or pip install 'ray[default]')") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False) if address else ray.init(include_dashboard=False, log_to_driver=False)
        except ConnectionError as e:
            raise RoteError(f"cannot reach a Ray cluster at {address}: {e}; start one with `ray start --head`") from None
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    cpus = max(1, min(1 if gpu else 2, total_cpus))
    # a worker's OpenMP threads sleep while they wait, as in a local sweep (rote.threads), even where Ray
    # loaded torch before rote could set it
    env = {"env_vars": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}}
    task = ray.remote(num_cpus=cpus, num_gpus=int(gpu), max_retries=retries, runtime_env=env)(train_remote)
    groups = group_runs(plan.todo, group)
    start = {}
    for g in groups:  # checkpoints an earlier sweep (local or Ray) left
        path = plan.store.adopt(g[0].key()) / CHECKPOINT
        if path.is_file():
            start[g[0].key()] = path.read_bytes()
    keeper = ray.remote(num_cpus=0)(Keeper).remote(start)
    pending = {task.remote([c.to_dict() for c in g], data_dir, cpus, keeper, checkpoint_every, save_model): g
               for g in groups}
    left = len(plan.todo)
    try:
        _collect(ray, plan, pending, left, total_cpus // cpus * group, on_result, keeper)
    except KeyboardInterrupt:  # stop the tasks in flight: their runs resume from the checkpoints kept here
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
        _keep_checkpoints(ray, plan, keeper)
        raise


def _keep_checkpoints(ray, plan, keeper) -> None:
    """Write the checkpoints the workers sent since the last look into the store's temporary directories."""
    try:
        new = ray.get(keeper.take.remote(), timeout=30)
    except Exception:  # the keeper is gone (the cluster is going down): the last ones kept must do
        return
    for key, blob in new.items():
        if not plan.store.done(key):
            write_atomic(plan.store.temp_dir(key) / CHECKPOINT, blob)


def _collect(ray, plan, pending: dict, left: int, slots: int, on_result, keeper) -> None:
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # wakes up for Ctrl-C
        _keep_checkpoints(ray, plan, keeper)
        for ref in ready:
            g = pending.pop(ref)
            try:
                outs = ray.get(ref)
            except Exception as e:  # the task's worker or node died more often than `retries` allows
                error = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                outs = [{"key": c.key(), "status": "failed", "error": error, "config": c.to_dict()} for c in g]
            for out in outs:
                plan.store.land(out)
                left -= 1
                on_result(out, min(left, slots))
