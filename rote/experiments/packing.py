"""How a sweep fills a CPU: one run at a time with every core's thread, or one run per core with one thread each.

Which is faster depends on the machine and the model (a tiny model gains
nothing from a second thread; a large convolution may gain more from threads
than from a second process sharing the caches), so it is measured, not
guessed: ``measure`` trains the sweep's own kind of model for a few seconds
both ways, on random data of the real shape, through the real training step,
and the result is cached per machine and model kind in rote's cache
(packing.json). `rote sweep --measure-packing` measures again; the environment
variable ROTE_PACKING=one or per-core decides without measuring.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rote.config import RunConfig

# seconds each side of the measurement trains (after a warm-up), all processes together
MEASURE_SECONDS = 3.0
WARMUP_STEPS = 3


@dataclass(frozen=True)
class Packing:
    jobs: int  # the faster: 1 (one process, `cores` threads) or `cores` (one thread each)
    cores: int
    one_process: float  # model-steps per second, one process with `cores` threads
    per_core: float  # model-steps per second, `cores` processes with one thread each, summed
    busy: float  # cores other processes kept busy while it was measured
    when: str


def cache_path() -> Path:
    from rote.data.sources import cache_dir

    return cache_dir() / "packing.json"


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(cfg: RunConfig, in_shape: tuple, classes: int, k: int, cores: int) -> str:
    import torch

    return "|".join(map(str, (_cpu_name(), cores, torch.__version__, cfg.model, tuple(in_shape), classes,
                              cfg.batch_size, cfg.optimizer, k)))


def training_step(cfg: RunConfig, in_shape: tuple, classes: int, k: int):
    """One training step of k stacked models of this run's kind (as train_many builds them, as
    execute.calibrate times them) on one fixed random batch: a function that takes the step."""
    import torch

    from rote.config import resolve_device
    from rote.training.members import build_members, input_layout

    device = resolve_device(cfg.device)
    layout = input_layout(cfg, device, k, tuple(in_shape))
    members = build_members([cfg] * k, tuple(in_shape), classes, device, list(range(k)))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(k, cfg.batch_size, *in_shape, generator=gen).to(device)
    if x.dim() == 5:  # (k, B, C, H, W) in the members' layout, as train_many slices it
        x = torch.stack([m.contiguous(memory_format=layout) for m in x])
    y = torch.randint(0, classes, (k, cfg.batch_size), generator=gen).to(device)
    members.train(True)
    return lambda: members.step(members.losses(members.forward(x), y))


def _steps_per_second(cfg_dict: dict, in_shape: tuple, classes: int, k: int, threads: int, start: float) -> float:
    """In a worker: model-steps per second of the real training step of k stacked models, timed from ``start``
    (a shared wall-clock moment, so that processes measured side by side overlap) for MEASURE_SECONDS."""
    import torch

    torch.set_num_threads(threads)
    step = training_step(RunConfig.from_dict(cfg_dict), in_shape, classes, k)
    for _ in range(WARMUP_STEPS):
        step()
    while time.time() < start:
        time.sleep(0.005)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < MEASURE_SECONDS:
        step()
        n += 1
    return k * n / (time.perf_counter() - t0)


def measure(cfg: RunConfig, in_shape: tuple, classes: int, k: int = 1, cores: Optional[int] = None,
            log=lambda s: None) -> Packing:
    """Measure both packings now, twice each (about 4 x MEASURE_SECONDS plus process start-ups), cache and
    return the result."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from rote.threads import busy_cores, usable_cores

    cores = cores or usable_cores()
    busy = busy_cores()
    rates: dict[int, list[float]] = {1: [], cores: []}
    ctx = mp.get_context("spawn")
    # A B B A: a machine whose other load drifts during the measurement favours neither side
    for jobs, threads in ((1, cores), (cores, 1), (cores, 1), (1, cores)):
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            # start-up (importing torch) takes seconds: every worker starts timing at the same moment after it
            start = time.time() + 4.0 + 0.5 * jobs
            futs = [pool.submit(_steps_per_second, cfg.to_dict(), tuple(in_shape), classes, k, threads, start)
                    for _ in range(jobs)]
            rates[jobs].append(sum(f.result() for f in futs))
    rates = {j: sum(v) / len(v) for j, v in rates.items()}
    best = 1 if rates[1] >= rates[cores] else cores
    result = Packing(jobs=best, cores=cores, one_process=rates[1], per_core=rates[cores], busy=round(busy, 2),
                     when=time.strftime("%Y-%m-%d %H:%M:%S"))
    _store(cache_key(cfg, in_shape, classes, k, cores), result)
    log(f"packing measured on {cores} cores ({result.busy:.1f} busy with other work): one process x {cores} threads "
        f"{rates[1]:.1f} model-steps/s, {cores} processes x 1 thread {rates[cores]:.1f}; "
        f"using {best} process{'es' * (best > 1)}"
        + ("; other work disturbs such a measurement: repeat it with --measure-packing when the machine is quiet"
           if busy >= 0.5 else ""))
    return result


def _store(key: str, result: Packing) -> None:
    from rote.atomic import write_atomic

    path = cache_path()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):  # a damaged cache: measured again, and replaced
        known = {}
    known[key] = result.__dict__
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(known, indent=1).encode())
    except OSError:
        pass  # a read-only cache only means measuring again next time


def cached(cfg: RunConfig, in_shape: tuple, classes: int, k: int, cores: int) -> Optional[Packing]:
    try:
        found = json.loads(cache_path().read_text()).get(cache_key(cfg, in_shape, classes, k, cores))
        return Packing(**found) if found else None
    except (OSError, ValueError, TypeError, AttributeError):  # absent or damaged: measure again
        return None


def best_jobs(cfg: RunConfig, in_shape: tuple, classes: int, k: int = 1, groups: int = 2, remeasure: bool = False,
              log=lambda s: None) -> int:
    """Processes for a CPU sweep of runs like ``cfg`` (in groups of k): 1 or one per usable core, whichever
    measured faster here. 1 without measuring when there is one core or one group to run."""
    from rote.threads import usable_cores

    cores = usable_cores()
    if cores <= 1 or groups <= 1:
        return 1
    fixed = os.environ.get("ROTE_PACKING", "")  # "one" or "per-core": no measurement (tests, scripts)
    if fixed not in ("", "one", "per-core"):
        from rote.errors import RoteError

        raise RoteError(f"ROTE_PACKING={fixed!r} is not a packing; set it to 'one' or 'per-core', or unset it "
                        f"to measure which is faster here")
    if fixed in ("one", "per-core"):
        return 1 if fixed == "one" else min(groups, cores)
    found = None if remeasure else cached(cfg, in_shape, classes, k, cores)
    return min(groups, (found or measure(cfg, in_shape, classes, k, cores, log=log)).jobs)


def plan_jobs(p, group: int, remeasure: bool = False, data_dir=None, log=lambda s: None) -> int:
    """``best_jobs`` for a plan's to-do list (plan.Plan), measured on its first run's kind."""
    from rote.data.prepare import input_shape
    from rote.experiments.plan import dataset_shape as _shape
    from rote.experiments.grouping import group_runs

    if not p.todo:
        return 1
    c0 = p.todo[0]
    classes, _, image_shape, _ = (p.shapes or {}).get(c0.dataset) or _shape(c0.dataset, data_dir)
    in_shape = input_shape(image_shape, c0.preprocess) if len(image_shape) == 3 else tuple(image_shape)
    groups = group_runs(p.todo, group)
    return best_jobs(c0, in_shape, classes, k=len(groups[0]), groups=len(groups), remeasure=remeasure, log=log)
