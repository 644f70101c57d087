"""K runs of one architecture trained at once, as one batched model.

The K models' weights are stacked (torch.func.stack_module_state) and one
vmapped forward pass computes all K outputs. Each run keeps what makes it a
separate run: its own initialisation, labels, inputs and data order, its own
optimiser state (Adam and SGD are elementwise, so one optimiser over stacked
weights is K independent optimisers), its own stop rule and its own record.
A run that stops (memorised, collapsed, diverged or out of epochs) leaves the
group, and the others go on.

This pays where one small model leaves the device idle (a GPU at batch 32);
on a CPU whose cores one model already keeps busy it does not.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from rote.config import RunConfig
from rote.data.prepare import Prepared
from rote.errors import ConfigError
from rote.models import count_parameters, create_model
from rote.training.metrics import label_entropy
from rote.config import resolve_device, seeds_for
from rote.training.loop import (EVAL_BATCH, EpochRecord, Stopper, TrainResult, _lr_at, accumulator_dtype,
                                steady_seconds)

# settings that must agree for runs to share one batched model and one optimiser
GROUP_FIELDS = ("dataset", "n_train", "model", "optimizer", "lr", "momentum", "weight_decay", "schedule",
                "step_every", "step_gamma", "batch_size", "val_split", "dropout", "augment_shift", "device")


def group_key(cfg: RunConfig) -> tuple:
    return tuple(getattr(cfg, f) for f in GROUP_FIELDS)


def groupable(cfg: RunConfig) -> bool:
    # dropout and augmentation draw per-step randomness that a batched model would draw differently
    return cfg.dropout == 0 and cfg.augment_shift == 0


def group_runs(cfgs: list[RunConfig], k: int) -> list[list[RunConfig]]:
    """Split runs into groups of at most k compatible runs, keeping their order."""
    buckets: dict[tuple, list[RunConfig]] = {}
    groups = []
    for c in cfgs:
        if k <= 1 or not groupable(c):
            groups.append([c])
            continue
        b = buckets.setdefault(group_key(c), [])
        b.append(c)
        if len(b) == k:
            groups.append(b[:])
            b.clear()
    groups.extend(b for b in buckets.values() if b)
    return groups


class _Stack:
    """The live members' stacked weights and optimiser, rebuilt when a member leaves."""

    def __init__(self, models, cfg: RunConfig):
        params, buffers = stack_module_state(models)  # each (K, ...)
        self.params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        self.buffers = buffers
        self.cfg = cfg
        self.opt = self._optimizer(list(self.params.values()))

    def _optimizer(self, tensors):
        c = self.cfg
        if c.optimizer == "adam":
            return torch.optim.Adam(tensors, lr=c.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=c.weight_decay)
        return torch.optim.SGD(tensors, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows``, with their optimiser state."""
        old = list(self.params.values())
        state = [self.opt.state.get(p, {}) for p in old]
        self.params = {n: p.detach()[rows].clone().requires_grad_(True) for n, p in self.params.items()}
        self.buffers = {n: b[rows] for n, b in self.buffers.items()}
        lr = self.opt.param_groups[0]["lr"]
        self.opt = self._optimizer(list(self.params.values()))
        self.opt.param_groups[0]["lr"] = lr
        for p, st in zip(self.params.values(), state):
            if st:
                self.opt.state[p] = {k: (v[rows].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                                     for k, v in st.items()}


def train_group(cfgs: list[RunConfig], datas: list[Prepared], *, device: torch.device | None = None,
                on_epoch: Callable[[int, EpochRecord], None] | None = None) -> list[TrainResult]:
    """Train len(cfgs) compatible runs at once; the same results as train() on each, to float tolerance."""
    if len({group_key(c) for c in cfgs}) != 1 or not all(groupable(c) for c in cfgs):
        raise ConfigError("runs in a group must share " + ", ".join(GROUP_FIELDS) + " and use no dropout or shifts")
    cfg0 = cfgs[0]
    device = device or resolve_device(cfg0.device)
    K, classes = len(cfgs), datas[0].classes
    in_shape = tuple(datas[0].x_fit.shape[1:])
    models = [create_model(c.model, in_shape=in_shape, classes=classes, init=c.init,
                           generator=torch.Generator().manual_seed(seeds_for(c.seed)["init"])).to(device)
              for c in cfgs]
    n_params = count_parameters(models[0])
    base = copy.deepcopy(models[0]).to("meta")
    stack = _Stack(models, cfg0)
    del models

    def forward(params, buffers, x):
        return functional_call(base, (params, buffers), (x,))

    batched = torch.vmap(forward, in_dims=(0, 0, 0))  # (K, B, ...) -> (K, B, classes)

    def put(name):
        return torch.stack([torch.from_numpy(np.ascontiguousarray(getattr(d, name))) for d in datas]).to(device)

    x_fit, y_fit, x_val, y_val = put("x_fit"), put("y_fit"), put("x_val"), put("y_val")
    x_test, y_test = put("x_test"), put("y_test")
    changed = torch.stack([torch.from_numpy(d.changed[: len(d.y_fit)]) for d in datas]).to(device)
    n_fit, bs = x_fit.shape[1], cfg0.batch_size
    order = [torch.Generator().manual_seed(seeds_for(c.seed)["order"]) for c in cfgs]
    stoppers = [Stopper(c, label_entropy(d.y_fit, d.classes)) for c, d in zip(cfgs, datas)]
    histories: list[list[EpochRecord]] = [[] for _ in cfgs]
    results: list[Optional[TrainResult]] = [None] * K
    elapsed = 0.0
    live = list(range(K))  # the original index of each live row
    acc_dtype = accumulator_dtype(device)

    @torch.inference_mode()
    def evaluate(x, y, rows):
        """(loss (R,), acc (R,), pred (R, N)) for the members at these rows of the stack, in large batches."""
        params = {n: p.detach()[rows] for n, p in stack.params.items()}
        buffers = {n: b[rows] for n, b in stack.buffers.items()}
        data_rows = [live[r] for r in rows]
        x, y = x[data_rows], y[data_rows]
        total = torch.zeros(len(rows), dtype=acc_dtype, device=device)
        preds = []
        for i in range(0, x.shape[1], EVAL_BATCH):
            out = batched(params, buffers, x[:, i:i + EVAL_BATCH])  # (R, b, classes)
            total += F.cross_entropy(out.flatten(0, 1), y[:, i:i + EVAL_BATCH].flatten(),
                                     reduction="none").view(len(rows), -1).to(acc_dtype).sum(1)
            preds.append(out.argmax(-1))
        pred = torch.cat(preds, 1)
        n = max(x.shape[1], 1)
        return (total / n).tolist(), ((pred == y).sum(1).to(acc_dtype) / n).tolist(), pred

    for epoch in range(1, max(c.epochs for c in cfgs) + 1):
        rows = torch.arange(len(live), device=device)
        lr = _lr_at(cfg0, epoch)
        stack.opt.param_groups[0]["lr"] = lr
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        perms = torch.stack([torch.randperm(n_fit, generator=order[j]) for j in live]).to(device)  # (R, n_fit)
        xs, ys = x_fit[live], y_fit[live]
        loss_sum = torch.zeros(len(live), device=device)
        correct = torch.zeros(len(live), device=device, dtype=torch.long)
        hist = torch.zeros(len(live), classes, device=device, dtype=torch.long)
        for i in range(0, n_fit, bs):
            idx = perms[:, i:i + bs]  # (R, B)
            xb = xs[rows[:, None], idx]  # (R, B, 1, 28, 28)
            yb = ys[rows[:, None], idx]  # (R, B)
            out = batched(stack.params, stack.buffers, xb)  # (R, B, classes)
            losses = F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(len(live), -1).mean(1)
            stack.opt.zero_grad(set_to_none=True)
            losses.sum().backward()  # each member's gradient is that of its own mean loss
            stack.opt.step()
            with torch.no_grad():
                pred = out.argmax(-1)
                loss_sum += losses.detach() * idx.shape[1]
                correct += (pred == yb).sum(1)
                hist += F.one_hot(pred, classes).sum(1)
        run_loss = (loss_sum / n_fit).tolist()
        seconds = time.perf_counter() - t0
        elapsed += seconds
        run_acc = (correct.to(acc_dtype) / n_fit).tolist()
        shares = (hist.max(1).values.to(acc_dtype) / n_fit).tolist()
        all_rows = list(range(len(live)))
        v_loss, v_acc, _ = evaluate(x_val, y_val, all_rows) if x_val.shape[1] else ([math.nan] * len(live),) * 2 + (None,)
        need_full = [r for r, j in enumerate(live)
                     if (cfgs[j].stop_at is not None and run_acc[r] >= cfgs[j].stop_at)
                     or (cfgs[j].eval_every and epoch % cfgs[j].eval_every == 0) or epoch == cfgs[j].epochs]
        full = {}
        if need_full:
            f_loss, f_acc, f_pred = evaluate(x_fit, y_fit, need_full)
            for m, r in enumerate(need_full):
                hits, ch = f_pred[m] == y_fit[live[r]], changed[live[r]]
                full[r] = (f_loss[m], f_acc[m], float(hits[ch].float().mean()) if bool(ch.any()) else None,
                           float(hits[~ch].float().mean()) if bool((~ch).any()) else None)
        leaving = []
        for r, j in enumerate(live):
            rec = EpochRecord(epoch=epoch, seconds=seconds, loss=run_loss[r], acc=run_acc[r], val_loss=v_loss[r],
                              val_acc=v_acc[r], pred_max_share=shares[r], lr=lr)
            if r in full:
                rec.train_loss_full, rec.train_acc_full, rec.corrupt_acc, rec.clean_acc = full[r]
            histories[j].append(rec)
            if on_epoch:
                on_epoch(j, rec)
            if stoppers[j].update(rec, elapsed) or epoch >= cfgs[j].epochs:
                leaving.append(r)
        for r in leaving:
            j = live[r]
            f = full.get(r)
            if f is None:
                f_loss, f_acc, _ = evaluate(x_fit, y_fit, [r])
                f = (f_loss[0], f_acc[0])
            t_loss, t_acc, t_pred = evaluate(x_test, y_test, [r])
            # the group's epoch is shared by its members
            spe = steady_seconds(histories[j]) / len(live)
            results[j] = stoppers[j].result(histories[j], train=f[:2], test=(t_loss[0], t_acc[0], t_pred[0].cpu().numpy()),
                                            train_seconds=elapsed, seconds_per_epoch=spe, n_fit=n_fit,
                                            parameters=n_params)
        if leaving:
            keep = [r for r in range(len(live)) if r not in leaving]
            live = [live[r] for r in keep]
            if not live:
                break
            stack.keep(torch.tensor(keep, device=device))
    return results  # type: ignore[return-value]


def group_epochs(dataset, device, k: int, epochs: int) -> list[float]:
    """Seconds per group-epoch for k seed-protocol runs trained together (for the benchmark)."""
    from rote.data.prepare import prepare

    cfgs = [RunConfig.from_dict({"seed": s, "epochs": epochs + 1, "stop_at": "none", "collapse_patience": 0,
                                 "device": device.type}) for s in range(k)]
    res = train_group(cfgs, [prepare(dataset, c) for c in cfgs], device=device)
    return [r.seconds for r in res[0].history[1:]]
