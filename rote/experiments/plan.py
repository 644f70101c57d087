"""A sweep's plan: every run checked against its dataset and the store, split into done and to-do.

Below both the executors and the time estimate: it creates nothing and trains nothing.
"""

from __future__ import annotations

import functools
from collections import Counter
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rote.config import RunConfig, resolve_device
from rote.errors import ConfigError
from rote.experiments.store import Store
from rote.experiments.sweep import Sweep


@functools.lru_cache(maxsize=None)  # per process: a worker loads each dataset once
def load_cached(name: str, data_dir):
    from rote.data.sources import load_dataset

    return load_dataset(name, data_dir=data_dir, log=lambda s: None)


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    store: Store
    todo: list[RunConfig]
    done: list[RunConfig]
    # {dataset: (classes, training images, image shape, test images)}, as dataset_shape gives them
    shapes: dict = field(default_factory=dict)


def dataset_shape(dataset: str, data_dir) -> tuple[int, int, tuple, int]:
    """(classes, training images, image shape, test images) of a dataset: from the registry, without reading data,
    so that a dry run works before the files are there; a user's npz file is read (it is small)."""
    from rote.data.registry import get_spec

    if dataset.startswith("npz:"):
        ds = load_cached(dataset, data_dir)
        return ds.classes, len(ds.y_train), tuple(ds.image_shape), len(ds.y_test)
    spec = get_spec(dataset)
    return spec.classes, spec.n_train, tuple(spec.image_shape), spec.n_test


def plan(sweep: Sweep, sweep_dir: Path, data_dir=None) -> Plan:
    """Check every run against its dataset and the store's place, then split into done and to-do;
    creates nothing."""
    from rote.data.prepare import input_shape
    from rote.models import check_model_name

    shapes = {name: dataset_shape(name, data_dir) for name in {c.dataset for c in sweep.configs}}
    for name, n_train in {(c.dataset, c.n_train) for c in sweep.configs}:
        classes, n = shapes[name][:2]
        if not (classes <= n_train <= n):
            raise ConfigError(f"n_train={n_train} is outside [{classes}, {n}] for {name}")
    for model, dataset, preprocess in sorted({(c.model, c.dataset, c.preprocess) for c in sweep.configs}):
        classes, _, image_shape, _ = shapes[dataset]
        in_shape = input_shape(image_shape, preprocess) if len(image_shape) == 3 else tuple(image_shape)
        check_model_name(model, in_shape=in_shape, classes=classes, shape_known=True)
    store = Store(sweep_dir)
    store.check_writable()
    done_keys = store.done_keys()
    runs = {c.key(): c for c in sweep.configs}  # a run listed twice runs once
    _refuse_other_versions(store, [c for k, c in runs.items() if k not in done_keys])
    return Plan(sweep, store, [c for k, c in runs.items() if k not in done_keys],
                [c for k, c in runs.items() if k in done_keys], shapes)


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


def step_macs(cfgs: list[RunConfig], shapes: dict, group: int = 1) -> Optional[int]:
    """The largest training step, in forward multiply-adds, among these runs trained ``group`` at a time,
    if every one is a dense model (rote.models.dense_step_macs), else None: what rote.threads needs to keep
    tiny dense models on one thread."""
    from rote.models import dense_step_macs

    worst = 0
    for (model, dataset, batch), n in Counter((c.model, c.dataset, c.batch_size) for c in cfgs).items():
        if dataset not in shapes:
            return None
        classes, _, shape, _ = shapes[dataset]
        macs = dense_step_macs(model, shape, classes, batch, min(n, max(1, group)))
        if macs is None:
            return None
        worst = max(worst, macs)
    return worst or None


from rote.config import IDENTITY_FIELDS as IDENTITY  # noqa: E402


def _refuse_other_versions(store: Store, todo: list) -> None:
    """A store whose records were made from another version of a user's model or data, for settings that are
    otherwise these: refused in one line, never silently reused and never mixed in with the new ones."""
    if not any(getattr(c, k) for c in todo for k in IDENTITY) or not store.runs.is_dir():
        return
    def rest(d):
        return tuple(sorted((k, repr(v)) for k, v in d.items() if k not in IDENTITY and k != "seed"))
    wanted = {rest(c.to_dict()): c for c in todo}
    stale = []
    for r in store.records():
        c = wanted.get(rest(r["config"]))
        if c is not None and any(r["config"].get(k) != getattr(c, k) for k in IDENTITY):
            stale.append((r, c))
    if stale:
        r, c = stale[0]
        name = {"model_source": c.model, "data_source": c.dataset, "optimizer_source": c.optimizer}
        what = " and ".join(f"{k.split('_')[0]} '{name[k]}' "
                            f"({r['config'].get(k)} then, {getattr(c, k)} now)"
                            for k in IDENTITY if r["config"].get(k) != getattr(c, k))
        raise ConfigError(f"{store.root} holds {len(stale)} finished run{'s' * (len(stale) != 1)} of these settings "
                          f"made from another version of the {what}; they are not reused and not mixed with "
                          f"new ones: sweep into another --out, or remove those runs from {store.runs} to run "
                          f"them again")
