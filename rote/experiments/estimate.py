"""How long a sweep's to-do list will take on this machine: the training step timed, the epochs from finished runs.

``estimate`` gives a range and a bound (``Estimate``); ``calibrate`` times the
real training step of a group of models, built by the same factory as the
training loop's (rote.training.members.build_members).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from rote.config import RunConfig, resolve_device
from rote.experiments.grouping import group_runs
from rote.experiments.plan import Plan, dataset_shape, parallelism

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
    from rote.training.members import input_layout

    layout = input_layout(cfg, device, k, in_shape)
    return (cfg.model, in_shape, classes, cfg.batch_size, str(layout), cfg.optimizer, cfg.loss, k, device.type)


def calibrate(cfg: RunConfig, in_shape: tuple, classes: int, k: int = 1, eval_batch: Optional[int] = None) -> Speed:
    """Time a group of k models (k <= CALIBRATE_MAX_GROUP) of this run's kind through the real training
    step: built as train_many builds them (rote.training.members.build_members), on random data of the real
    shape. Warm-up first, the device synchronised, repeats, medians. Cached per process."""
    import torch

    from rote.training.members import EVAL_BATCH, build_members, input_layout

    device = resolve_device(cfg.device)
    key = _speed_key(cfg, tuple(in_shape), classes, k, device)
    if key in _speeds:
        return _speeds[key]
    layout = input_layout(cfg, device, k, tuple(in_shape))
    members = build_members([cfg] * k, tuple(in_shape), classes, device, list(range(k)))
    gen = torch.Generator().manual_seed(0)
    bs = cfg.batch_size

    def batch(n):  # (k, n, *in_shape), in the members' layout, as train_many slices it
        x = torch.randn(k, n, *in_shape, generator=gen).to(device)
        return torch.stack([m.contiguous(memory_format=layout) for m in x]) if x.dim() == 5 else x

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
    shapes = p.shapes or {d: dataset_shape(d, data_dir) for d in {c.dataset for c in p.todo}}
    used = finished_epochs(p)
    prior = p.sweep.expect_epochs
    n_from_runs = sum(len(used[k]) for k in {_what(c) for c in p.todo} if k in used)
    by_prior = fixed = 0
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
            if c.stop_at is None and c.collapse_patience == 0:  # nothing stops it early: it runs its budget
                fixed += 1
                typical.append(float(c.epochs))
                upper.append(float(c.epochs))
            elif seen:
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
    if fixed and not (n_from_runs or by_prior):
        epochs_from = "fixed: no stop rule (stop_at none, collapse_patience 0), every run trains its budget"
    elif n_from_runs and by_prior:
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
