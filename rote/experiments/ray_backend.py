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
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from rote.errors import RoteError
from rote.experiments.grouping import group_runs
from rote.experiments.scratch import make_scratch


def train_remote(cfg_dicts: list[dict], data_dir, threads: int) -> list[dict]:
    """Runs on a Ray worker: train a group of runs in scratch directories, return their outcomes and files."""
    from rote.experiments.execute import train_records

    scratch = make_scratch("rote-")  # named by this worker, so the next one removes it if this one is killed
    try:
        dests = [scratch / f"run{i}" for i in range(len(cfg_dicts))]
        outs = train_records(cfg_dicts, dests, data_dir=data_dir, threads=threads)
        for out, dest in zip(outs, dests):
            if out["status"] == "done":
                out["files"] = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
        return outs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_ray(plan, *, address=None, data_dir=None, retries: int = 2, group: int = 1, gpu: bool = False,
            on_result: Callable[[dict, int], None] = lambda r, running: None) -> None:
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
    task = ray.remote(num_cpus=cpus, num_gpus=int(gpu), max_retries=retries)(train_remote)
    pending = {task.remote([c.to_dict() for c in g], data_dir, cpus): g for g in group_runs(plan.todo, group)}
    left = len(plan.todo)
    try:
        _collect(ray, plan, pending, left, total_cpus // cpus * group, on_result)
    except KeyboardInterrupt:  # stop the tasks in flight: their runs are discarded, a rerun does them
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
        raise


def _collect(ray, plan, pending: dict, left: int, slots: int, on_result) -> None:
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # wakes up for Ctrl-C
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
