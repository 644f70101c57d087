"""Sweeps on a Ray cluster. The only module that imports ray (`pip install rote[ray]`).

Each run is a Ray task that asks for the CPUs (and GPU) one run needs. The
task trains into a scratch directory on whichever node it lands on and sends
the finished record's files back; the driver writes them into the store with
the same atomic rename as the local executor. So the store needs no shared
filesystem, a record exists only once it is complete, and stopping the
driver, killing a worker or losing a node loses at most the runs in flight:
Ray retries a task whose worker or node died (``--retries`` times), and a
run that still fails is recorded under ``failed/`` with its error. Rerunning
the sweep skips every finished run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from rote.errors import RoteError
from rote.atomic import write_atomic
from rote.experiments.record import write_json


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RoteError("the Ray backend needs Ray: pip install 'rote[ray]' (or pip install 'ray[default]')") from None
    return ray


def train_remote(cfg_dicts: list[dict], data_dir, threads: int) -> list[dict]:
    """Runs on a Ray worker: train a group of runs (often one) in scratch directories, return their files."""
    from rote.experiments.execute import train_record_group

    scratch = Path(tempfile.mkdtemp(prefix="rote-"))
    try:
        dests = [scratch / f"run{i}" for i in range(len(cfg_dicts))]
        outs = train_record_group(cfg_dicts, dests, data_dir=data_dir, threads=threads)
        for out, dest in zip(outs, dests):
            if out["status"] == "done":
                out["files"] = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
            out["host"] = os.uname().nodename
        return outs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _land(store, out: dict) -> int:
    """Write one run's outcome into the store from the driver; returns 1 if it failed."""
    key = out["key"]
    if out["status"] == "done":
        tmp = store.temp_dir(key)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, blob in out.pop("files").items():
            write_atomic(tmp / name, blob)
        store.commit(key, tmp)
        stale = store.root / "failed" / f"{key}.json"
        if stale.exists():
            stale.unlink()
        return 0
    (store.root / "failed").mkdir(exist_ok=True)
    write_json(store.root / "failed" / f"{key}.json", out)
    return 1


def run_ray(plan, *, address=None, data_dir=None, retries: int = 2, on_result: Callable[[dict], None],
            bar=None, group: int = 1, cpus_per_run: int | None = None, gpus_per_run: float | None = None) -> None:
    ray = _import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False) if address else ray.init(include_dashboard=False, log_to_driver=False)
        except ConnectionError as e:
            raise RoteError(f"cannot reach a Ray cluster at {address}: {e}; start one with `ray start --head`") from None
    device = plan.todo[0].device if plan.todo else "cpu"
    if gpus_per_run is None:
        gpus_per_run = 1 if device == "cuda" else 0
    if cpus_per_run is None:
        cpus_per_run = 1 if gpus_per_run else 2
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    cpus_per_run = max(1, min(cpus_per_run, total_cpus))
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=retries)(train_remote)

    from rote.training.group import group_runs

    pending = {}
    for g in group_runs(plan.todo, group):
        pending[task.remote([c.to_dict() for c in g], data_dir, cpus_per_run)] = g
    failed = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            g = pending.pop(ref)
            try:
                outs = ray.get(ref)
            except Exception as e:  # the task's worker or node died more often than --retries allows
                error = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                outs = [{"key": c.key(), "status": "failed", "error": error, "config": c.to_dict()} for c in g]
            for out in outs:
                failed += _land(plan.store, out)
                on_result(out)
        if bar is not None:
            bar.set_postfix(running=min(len(pending), max(1, total_cpus // cpus_per_run)), failed=failed,
                            refresh=True)
