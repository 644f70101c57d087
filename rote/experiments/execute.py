"""Running a sweep's runs into its store: planning, one run, the local executor.

Every executor (in-process, local processes, Ray) calls ``train_record_group``
for a run or a group of runs, which trains them into temporary directories;
the complete records are then published with one atomic rename each. What the executors add is only where the call
happens.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from rote.config import RunConfig
from rote.errors import ConfigError
from rote.atomic import write_atomic
from rote.experiments.record import write_json
from rote.experiments.store import Store
from rote.experiments.sweep import Sweep

_DATASETS: dict = {}  # per process: a worker loads each dataset once


def _dataset(name: str, data_dir):
    from rote.data.sources import load_dataset

    if name not in _DATASETS:
        _DATASETS[name] = load_dataset(name, data_dir=data_dir, log=lambda s: None)
    return _DATASETS[name]


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    store: Store
    todo: list[RunConfig]
    done: list[RunConfig]


def plan(sweep: Sweep, sweep_dir: Path, data_dir=None) -> Plan:
    """Check every run against its dataset's registered size, then split into done and to-do; creates nothing.

    Reads no data, so that a dry run works before the files are there.
    """
    from rote.data.registry import get_spec

    for c in sweep.configs:
        spec = get_spec(c.dataset)
        if not (spec.classes <= c.n_train <= spec.n_train):
            raise ConfigError(f"n_train={c.n_train} is outside [{spec.classes}, {spec.n_train}] for {c.dataset}")
    store = Store(sweep_dir)
    done_keys = store.done_keys()
    todo, done = [], []
    seen = set()
    for c in sweep.configs:
        k = c.key()
        if k in seen:
            continue
        seen.add(k)
        (done if k in done_keys else todo).append(c)
    return Plan(sweep, store, todo, done)


def train_record(cfg_dict: dict, dest: Path, data_dir=None, threads: Optional[int] = None) -> dict:
    """Train one run into ``dest`` (a fresh directory). Returns {'key', 'status': done|failed, ...}.

    Every executor calls this, wherever the run happens; failures are
    returned, not raised, so one bad run never stops a sweep.
    """
    import torch

    from rote.experiments.run import run

    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    key = cfg.key()
    t0 = time.time()
    try:
        _, result = run(cfg, dest, dataset=_dataset(cfg.dataset, data_dir), log=lambda s: None)
    except Exception as e:
        shutil.rmtree(dest, ignore_errors=True)
        return {"key": key, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "config": cfg.to_dict(), "host": os.uname().nodename}
    return {"key": key, "status": "done", "outcome": result["outcome"], "seconds": time.time() - t0,
            "host": os.uname().nodename}


def train_record_group(cfg_dicts: list[dict], dests: list[Path], data_dir=None,
                       threads: Optional[int] = None) -> list[dict]:
    """Train a group of compatible runs into ``dests`` as one batched model (one run: train_record)."""
    import torch

    from rote.experiments.run import run_group

    if len(cfg_dicts) == 1:
        return [train_record(cfg_dicts[0], dests[0], data_dir, threads)]
    if threads:
        torch.set_num_threads(threads)
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    try:
        results = run_group(cfgs, dests, dataset=_dataset(cfgs[0].dataset, data_dir))
    except Exception:  # one at a time instead, so that a bad run is recorded on its own
        for d in dests:
            shutil.rmtree(d, ignore_errors=True)
        return [train_record(c, d, data_dir, threads) for c, d in zip(cfg_dicts, dests)]
    return [{"key": c.key(), "status": "done", "outcome": r["outcome"]} for c, r in zip(cfgs, results)]


def execute_group(cfg_dicts: list[dict], store_root: str, data_dir=None, threads: Optional[int] = None) -> list[dict]:
    """Train runs (compatible ones together, as one batched model) into the store, on this machine.

    Safe to call twice for the same run, concurrently or after a crash: the
    first complete record wins and the other is discarded.
    """
    store = Store(Path(store_root))
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    skipped = [{"key": c.key(), "status": "skipped"} for c in cfgs if store.done(c.key())]
    cfgs = [c for c in cfgs if not store.done(c.key())]
    if not cfgs:
        return skipped
    tmps = [store.temp_dir(c.key()) for c in cfgs]
    for t in tmps:
        shutil.rmtree(t, ignore_errors=True)
    outs = train_record_group([c.to_dict() for c in cfgs], tmps, data_dir, threads)
    for c, t, out in zip(cfgs, tmps, outs):
        failed = store.root / "failed" / f"{c.key()}.json"
        if out["status"] == "done":
            store.commit(c.key(), t)
            if failed.exists():
                failed.unlink()
        else:
            failed.parent.mkdir(exist_ok=True)
            write_json(failed, out)
    return skipped + outs


def _exit_with_parent(parent: int) -> None:
    """Worker processes end when the driver dies (even by SIGKILL), instead of running on as orphans."""
    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(parent: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _exit_with_parent(parent)


def run_local(p: Plan, jobs: int, data_dir=None, on_result: Callable[[dict], None] = lambda r: None,
              group: int = 1) -> None:
    """Run the plan's to-do list here: in this process for jobs=1, else in a pool of processes.

    With group > 1, compatible runs are trained together as one batched model.
    """
    from rote.training.group import group_runs

    cores = os.cpu_count() or 1
    groups = group_runs(p.todo, group)
    if jobs <= 1:
        for g in groups:
            for r in execute_group([c.to_dict() for c in g], str(p.store.root), data_dir):
                on_result(r)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, cores // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(os.getpid(), threads)) as pool:
        futures = [pool.submit(execute_group, [c.to_dict() for c in g], str(p.store.root), data_dir, threads)
                   for g in groups]
        for f in as_completed(futures):
            for r in f.result():
                on_result(r)


def default_group(device: str) -> int:
    """Runs per batched model: on a CPU one model already keeps the cores busy, so 1; on a GPU 32."""
    return 32 if device == "cuda" else 1


def default_jobs(device: str) -> int:
    """One process per two cores on CPU (a run uses two threads well); one on a GPU."""
    if device in ("cuda", "mps"):
        return 1
    return max(1, (os.cpu_count() or 1) // 2)


def start_store(p: Plan) -> int:
    """Create the store, keep the sweep file beside it, discard temporaries of killed runs."""
    p.store.create()
    path = p.store.root / "sweep.yaml"
    if path.exists() and path.read_text() != p.sweep.source:
        # settings may change: new keys are new runs, and old records stay valid for their own settings
        stamp = time.strftime("%Y%m%d-%H%M%S")
        shutil.copy(path, p.store.root / f"sweep.{stamp}.yaml")
    write_atomic(path, p.sweep.source.encode())
    return p.store.clean_stale()


def estimate_seconds(p: Plan) -> tuple[float, Optional[float], str]:
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
            rates[k] = _calibrate(c)
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


def _calibrate(cfg: RunConfig) -> float:
    """Images per second of a few training steps of this model on random data."""
    import torch
    import torch.nn.functional as F

    from rote.config import resolve_device
    from rote.data.registry import get_spec
    from rote.models import create_model

    device = resolve_device(cfg.device)
    spec = get_spec(cfg.dataset)
    model = create_model(cfg.model, in_shape=spec.image_shape, classes=spec.classes,
                         generator=torch.Generator().manual_seed(0)).to(device)
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(cfg.batch_size, *spec.image_shape, device=device)
    y = torch.randint(0, spec.classes, (cfg.batch_size,), device=device)
    steps, t = 0, 0.0
    for i in range(8):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= 2:
            t += time.perf_counter() - t0
            steps += 1
    return steps * cfg.batch_size / t
