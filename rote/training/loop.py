"""The training loop, written once, over R models trained side by side.

``rote run`` trains R = 1 model; a sweep with ``--group K`` trains up to K
compatible runs at once. Both go through ``train_many``: the same epochs,
batches, metrics, evaluations, stop rules and results. What differs lives
behind ``Members`` (rote.training.members): one plain module, or R models'
weights stacked and run through one vmapped forward pass; the loop sees a
leading member axis either way.

Each run keeps what makes it a separate run: its own initialisation, labels,
inputs and data order, its own optimiser state (Adam and SGD are
elementwise, so one optimiser over stacked weights is R independent ones),
its own stop rule and its own record. A run that stops leaves the members:
member r is always ``live[r]``, whose data is row ``live[r].index`` of the
data (which stays in place, all runs' rows, so that nothing large is copied).

The whole dataset lives on the device; a batch is a slice of a per-epoch
permutation. Metrics are accumulated on the device and read once per epoch,
so the host never waits on the device inside an epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from rote.config import RunConfig, resolve_device, seeds_for
from rote.data.prepare import Prepared
from rote.errors import ConfigError
from rote.training.members import EVAL_BATCH, Members, build_members, input_layout
from rote.training.metrics import label_entropy
from rote.training.optim import lr_at
from rote.training.recorder import ExampleRecorder
from rote.training.stacked import take
from rote.training.records import EpochRecord, TrainResult, steady_seconds
from rote.training.stopping import Stopper

# settings that must agree for runs to share one stacked model and one optimiser
SHARED_FIELDS = ("dataset", "preprocess", "n_train", "subset", "model", "optimizer", "loss", "lr", "momentum",
                 "weight_decay", "schedule", "step_every", "step_gamma", "warmup_epochs", "batch_size", "val_split", "dropout",
                 "augment_shift", "device", "channels_last")
# the per-run arrays put on the device, one row per run: (R, n, ...)
SPLITS = ("fit", "val", "test", "out")


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums of many losses; Apple's MPS has no float64, so float32 there."""
    return torch.float32 if device.type == "mps" else torch.float64


def distinct(arrays: list) -> tuple[list, list[int]]:
    """(the distinct arrays, each array's place among them): equal arrays are kept once."""
    bank, rows = [], []
    for a in arrays:
        for u, b in enumerate(bank):
            if b is a or (b.shape == a.shape and b.dtype == a.dtype and np.array_equal(b, a)):
                rows.append(u)
                break
        else:
            bank.append(a)
            rows.append(len(bank) - 1)
    return bank, rows


def shift_batch(x: torch.Tensor, k: int, gen: torch.Generator, background: float) -> torch.Tensor:
    """Shift each image by its own random offset of up to k pixels, filling with background."""
    b, c, h, w = x.shape
    padded = F.pad(x, (k, k, k, k), value=background)  # (B, C, H+2k, W+2k)
    off = torch.randint(0, 2 * k + 1, (2, b), generator=gen, device=gen.device).to(x.device)
    rows = off[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = off[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) else out.contiguous()


def _check_shared(cfgs: list[RunConfig]) -> None:
    differ = [f for f in SHARED_FIELDS if len({getattr(c, f) for c in cfgs}) > 1]
    if differ or (len(cfgs) > 1 and any(c.dropout or c.augment_shift for c in cfgs)):
        raise ConfigError("runs trained together must share " + ", ".join(differ or SHARED_FIELDS)
                          + " and use no dropout or shifts (their per-step randomness is per model)")


class CheckpointMismatch(Exception):
    """A checkpoint that loaded but does not fit the runs it was offered to."""


@dataclass
class _Run:
    """One run being trained: what makes it a separate run."""
    index: int  # its place in the caller's list of runs, and its row of the data
    cfg: RunConfig
    data: Prepared
    stopper: Stopper
    order: torch.Generator  # its data order
    history: list[EpochRecord]


class _Loop:
    """The state of train_many between epochs: members, the live runs, their data, the finished results."""

    def __init__(self, cfgs: list[RunConfig], datas: list[Prepared], device: torch.device, keep_weights: bool):
        self.cfg, self.device, self.keep_weights = cfgs[0], device, keep_weights
        seeds = [seeds_for(c.seed) for c in cfgs]
        in_shape = tuple(datas[0].x_fit.shape[1:])
        self.classes = datas[0].classes
        self.members: Members = build_members(cfgs, in_shape, self.classes, device, [s["init"] for s in seeds])
        self.live = [_Run(j, c, d, Stopper(c, label_entropy(d.y_fit, d.classes)),
                          torch.Generator().manual_seed(s["order"]), [])
                     for j, (c, d, s) in enumerate(zip(cfgs, datas, seeds))]
        self.aug_gen = torch.Generator().manual_seed(seeds[0]["augment"])  # shifts are never grouped: R = 1
        layout = input_layout(self.cfg, device, len(cfgs), in_shape)
        self.held_out = len(datas[0].out_index) > 0  # runs on a subset (all alike: they share `subset`)

        def put(arrays: list) -> torch.Tensor:
            ts = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]
            return torch.stack([t.contiguous(memory_format=layout) if t.dim() == 4 else t for t in ts])

        splits = [s for s in SPLITS if s != "out" or self.held_out]
        self.t = {f"y_{s}": put([getattr(d, f"y_{s}") for d in datas]) for s in splits}
        # Images are held once per distinct set, not once per run: the runs of a group usually share their
        # images and differ in labels and order. xrow[split][j] is run j's row of self.t["x_" + split].
        self.xrow = {}
        for s in splits:
            bank, self.xrow[s] = distinct([getattr(d, f"x_{s}") for d in datas])
            self.t[f"x_{s}"] = put(bank)
        self.t["changed"] = torch.stack([torch.from_numpy(d.changed[d.fit_index]) for d in datas]).to(device)
        self.n_fit = self.t["x_fit"].shape[1]
        self.background = float(datas[0].x_fit.min()) if self.n_fit else 0.0
        self.results: list[Optional[TrainResult]] = [None] * len(cfgs)
        self.epochs = max(c.epochs for c in cfgs)
        self.recorder = ExampleRecorder(len(cfgs), self.n_fit, self.epochs, device) if self.cfg.record_examples \
            else None
        self.acc_dtype = accumulator_dtype(device)
        self.epoch, self.elapsed = 0, 0.0

    @torch.inference_mode()
    def evaluate(self, split: str, rows: list[int]):
        """(loss, acc, pred (len(rows), N)) of the members at these rows, in eval mode and large batches."""
        x, y = self.t["x_" + split], self.t["y_" + split]
        data_rows = [self.live[r].index for r in rows]
        if data_rows != list(range(len(y))):
            y = y[torch.tensor(data_rows, device=self.device)]
        x_rows = [self.xrow[split][j] for j in data_rows]
        at = None if x_rows == list(range(len(x))) else torch.tensor(x_rows, device=self.device)
        shared = at is not None and len(set(x_rows)) == 1  # every member reads the same images: a view, no copy
        view = self.members.select(rows)
        view.train(False)
        total = torch.zeros(len(rows), dtype=self.acc_dtype, device=self.device)
        preds = []
        for i in range(0, x.shape[1], EVAL_BATCH):
            xb = x[:, i:i + EVAL_BATCH]
            if shared:
                xb = xb[x_rows[0]:x_rows[0] + 1].expand(len(rows), *xb.shape[1:])
            elif at is not None:
                xb = xb.index_select(0, at)
            out = view.forward(xb)  # (r, b, classes)
            total += view.loss_sums(out, y[:, i:i + EVAL_BATCH]).to(self.acc_dtype)
            preds.append(out.argmax(-1))
        self.members.train(True)
        pred = torch.cat(preds, 1) if preds else torch.zeros(len(rows), 0, dtype=torch.long, device=self.device)
        n = max(x.shape[1], 1)
        accs = [float(c) / n for c in (pred == y).sum(1).tolist()]
        return [float(t) / n for t in total.tolist()], accs, pred

    @torch.inference_mode()
    def example_losses(self, r: int):
        """(n_fit,) float64: -ln p(given label | image) of every training example for the member at row r, eval
        mode, the exact cross-entropy whatever the training loss (the memorised bits are measured in it)."""
        j = self.live[r].index
        x, y = self.t["x_fit"][self.xrow["fit"][j]][None], self.t["y_fit"][j][None]
        view = self.members.select([r])
        view.train(False)
        parts = []
        for i in range(0, x.shape[1], EVAL_BATCH):
            out = view.forward(x[:, i:i + EVAL_BATCH])  # (1, b, classes)
            parts.append(F.cross_entropy(out[0].double(), y[0, i:i + EVAL_BATCH], reduction="none"))
        self.members.train(True)
        return torch.cat(parts).cpu().numpy() if parts else np.zeros(0)

    def train_epoch(self, progress) -> tuple[float, list[float], list[float], list[float]]:
        """One pass over each member's training part: (seconds, mean loss, accuracy, commonest class's share)."""
        n_fit, bs, L, cfg = self.n_fit, self.cfg.batch_size, len(self.live), self.cfg
        x_fit, y_fit = self.t["x_fit"], self.t["y_fit"]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        perms = torch.stack([torch.randperm(n_fit, generator=run.order) for run in self.live]).to(self.device)
        rows = torch.tensor([run.index for run in self.live], device=self.device)[:, None]  # their label rows
        x_rows = torch.tensor([self.xrow["fit"][run.index] for run in self.live], device=self.device)[:, None]
        loss_sum = torch.zeros(L, device=self.device)
        correct = torch.zeros(L, device=self.device, dtype=torch.long)
        hist = torch.zeros(L, self.classes, device=self.device, dtype=torch.long)
        starts = range(0, n_fit, bs)
        if self.recorder:
            self.recorder.start_epoch(L)
        for i in (progress(starts) if progress else starts):
            idx = perms[:, i:i + bs]  # (L, B)
            xb, yb = take(x_fit, x_rows, idx), take(y_fit, rows, idx)  # (L, B, C, H, W), (L, B): x_fit[rows, idx]
            if cfg.augment_shift:
                xb = shift_batch(xb.flatten(0, 1), cfg.augment_shift, self.aug_gen, self.background).unflatten(
                    0, idx.shape)
            out = self.members.forward(xb)  # (L, B, classes)
            losses = self.members.losses(out, yb)
            self.members.step(losses)
            if self.recorder:
                self.recorder.batch(idx, out, yb)
            with torch.no_grad():
                pred = out.argmax(-1)
                loss_sum += losses.detach() * idx.shape[1]
                correct += (pred == yb).sum(1)
                hist += F.one_hot(pred, self.classes).sum(1)
        run_loss = [v / n_fit for v in loss_sum.tolist()]  # the one host sync of the epoch
        seconds = time.perf_counter() - t0
        return (seconds, run_loss, [float(c) / n_fit for c in correct.tolist()],
                [float(m) / n_fit for m in hist.max(1).values.tolist()])

    def full_fit(self, epoch: int, run_acc: list[float]) -> dict[int, tuple]:
        """{row: (loss, acc, acc on changed labels, acc on the others)} on the whole training part, for the
        members whose stop rule or eval_every asks for it this epoch."""
        need = [r for r, run in enumerate(self.live)
                if (run.cfg.stop_at is not None and run_acc[r] >= run.cfg.stop_at)
                or (run.cfg.eval_every and epoch % run.cfg.eval_every == 0) or epoch == run.cfg.epochs]
        full = {}
        if need:
            f_loss, f_acc, f_pred = self.evaluate("fit", need)
            for m, r in enumerate(need):
                j = self.live[r].index
                hits, ch = f_pred[m] == self.t["y_fit"][j], self.t["changed"][j]
                full[r] = (f_loss[m], f_acc[m], float(hits[ch].float().mean()) if bool(ch.any()) else None,
                           float(hits[~ch].float().mean()) if bool((~ch).any()) else None)
        return full

    def run_epoch(self, progress, on_epoch) -> bool:
        """Train and judge one epoch; False once every run has stopped."""
        epoch = self.epoch + 1
        lr = lr_at(self.cfg, epoch)
        self.members.set_lr(lr)
        seconds, run_loss, run_acc, shares = self.train_epoch(progress)
        self.elapsed += seconds
        L = len(self.live)
        t1 = time.perf_counter()
        val = self.evaluate("val", list(range(L))) if self.t["x_val"].shape[1] else ([math.nan] * L,) * 2
        full = self.full_fit(epoch, run_acc)
        eval_seconds = time.perf_counter() - t1
        leaving = []
        for r, run in enumerate(self.live):
            rec = EpochRecord(epoch=epoch, seconds=seconds, loss=run_loss[r], acc=run_acc[r], val_loss=val[0][r],
                              val_acc=val[1][r], pred_max_share=shares[r], lr=lr, eval_seconds=eval_seconds)
            if r in full:
                rec.train_loss_full, rec.train_acc_full, rec.corrupt_acc, rec.clean_acc = full[r]
            if run.stopper.plateau(rec):
                rec.dead_share, rec.dead_layer, rec.logit_spread = self.members.diagnose(
                    r, self.t["x_fit"][self.xrow["fit"][run.index]])
            run.history.append(rec)
            if on_epoch:
                on_epoch(run.index, rec)
            if run.stopper.update(rec, self.elapsed):
                leaving.append(r)
        if self.recorder:
            self.recorder.end_epoch(epoch, leaving)
        for r in leaving:
            self.finish(r, full.get(r))
        self.epoch = epoch
        if leaving:
            self.drop(leaving)
        return bool(self.live)

    def finish(self, r: int, full: Optional[tuple]) -> None:
        """The result of the run at row r, which stops now."""
        run = self.live[r]
        f = full or [v[0] for v in self.evaluate("fit", [r])[:2]]
        t_loss, t_acc, t_pred = self.evaluate("test", [r])
        res = run.stopper.result(
            run.history, train=(f[0], f[1]), test=(t_loss[0], t_acc[0], t_pred[0].cpu().numpy()),
            train_seconds=self.elapsed, seconds_per_epoch=steady_seconds(run.history) / len(self.live),
            n_fit=self.n_fit, parameters=self.members.parameters)
        res.fit_loss = self.example_losses(r)
        if self.recorder:
            res.examples = self.recorder.arrays(r)
        if self.held_out:
            res.fit_pred = self.evaluate("fit", [r])[2][0].cpu().numpy()
            res.out_pred = self.evaluate("out", [r])[2][0].cpu().numpy()
        if self.keep_weights:
            res.weights = self.members.weights(r)
        self.results[run.index] = res

    def drop(self, leaving: list[int]) -> None:
        """Stop training the runs at these rows: they leave the members and the record together."""
        stay = [r for r in range(len(self.live)) if r not in leaving]
        self.live = [self.live[r] for r in stay]
        if not stay:
            return
        self.members.keep(stay)
        if self.recorder:
            self.recorder.keep(stay)

    # -- checkpoints -------------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to go on from the end of this epoch exactly as if never stopped (copied)."""
        return {
            "epoch": self.epoch, "elapsed": self.elapsed, "members": self.members.state(),
            "live": [run.index for run in self.live],
            # records and results are never changed once made: copies of the lists hold them as they are now
            # (the checkpoint writes them out as plain values)
            "runs": {run.index: {"order": run.order.get_state(), "stopper": run.stopper.state(),
                                 "history": list(run.history)} for run in self.live},
            "results": {j: r for j, r in enumerate(self.results) if r is not None},
            "examples": self.recorder.state() if self.recorder else None,
            "rng": torch.get_rng_state(), "aug": self.aug_gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }

    def load_state(self, s: dict) -> None:
        """Go on from a state(); CheckpointMismatch if it does not fit (then start again with a new _Loop)."""
        try:
            by_index = {run.index: run for run in self.live}
            live = [by_index[j] for j in s["live"]]
            results = {int(j): _result(r) for j, r in s["results"].items()}
            if set(results) & set(s["live"]) or len(results) + len(live) != len(self.results):
                raise ValueError("its runs do not add up")
            if bool(self.recorder) != (s["examples"] is not None):
                raise ValueError("record_examples differs")
            self.members.load_state(s["members"])
            for run in live:
                st = s["runs"][run.index]
                run.order.set_state(st["order"])
                run.stopper.load_state(st["stopper"])
                run.history = [_record(h) for h in st["history"]]
            epoch, elapsed = int(s["epoch"]), float(s["elapsed"])
            if epoch < 1 or any(len(run.history) != epoch for run in live):
                raise ValueError(f"its epoch {epoch} does not match the histories it holds")
            if self.recorder:
                self.recorder.load_state(s["examples"])
            self.aug_gen.set_state(s["aug"])
            torch.set_rng_state(s["rng"])
            if s["cuda_rng"] is not None:
                torch.cuda.set_rng_state_all(s["cuda_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise CheckpointMismatch(f"{type(e).__name__}: {e}"[:200]) from None
        self.live, self.epoch, self.elapsed = live, epoch, elapsed
        for j, r in results.items():
            self.results[j] = r


def _record(h) -> EpochRecord:
    return h if isinstance(h, EpochRecord) else EpochRecord(**h)


def _result(r) -> TrainResult:
    return r if isinstance(r, TrainResult) else TrainResult.from_state(r)


def resumed_histories(state: dict, runs: int) -> list[list[EpochRecord]]:
    """Each run's epochs as a checkpoint holds them (what its history.csv must say on resuming)."""
    out: list[list[EpochRecord]] = []
    for j in range(runs):
        if j in state["runs"]:
            out.append([_record(h) for h in state["runs"][j]["history"]])
        else:
            out.append(_result(state["results"][j]).history)
    return out


def train_many(cfgs: list[RunConfig], datas: list[Prepared], *, device: torch.device | None = None,
               on_epoch: Callable[[int, EpochRecord], None] | None = None,
               progress: Callable[[range], object] | None = None, checkpoint=None,
               resume: Optional[dict] = None, keep_weights: bool = False) -> list[TrainResult]:
    """Train len(cfgs) runs side by side (see the module docstring); one TrainResult each.

    on_epoch(j, rec) is called with run j's record of each epoch as soon as it
    is known (for logging and for writing history as it grows). progress, if
    given, wraps the range of batch starts of an epoch (a progress bar).

    checkpoint (rote.training.checkpoint.Checkpoint): saves the state at the end
    of an epoch when due, and the last epoch's state when interrupted
    (KeyboardInterrupt, SIGTERM as rote raises it). resume: a state it saved, to
    go on from (CheckpointMismatch if it does not fit these runs). keep_weights:
    each result carries its model's final state_dict.
    """
    _check_shared(cfgs)
    device = device or resolve_device(cfgs[0].device)
    # dropout draws from torch's global generator: seed it from the run (runs with dropout are never grouped),
    # so that a run is the same in any process, and give the caller's generator back afterwards
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seeds_for(cfgs[0].seed)["dropout"])
        return _train(cfgs, datas, device, on_epoch, progress, checkpoint, resume, keep_weights)


def _train(cfgs, datas, device, on_epoch, progress, checkpoint, resume, keep_weights) -> list[TrainResult]:
    loop = _Loop(cfgs, datas, device, keep_weights)
    if resume is not None:
        loop.load_state(resume)
    snapshot = None
    loop.members.train(True)
    try:
        while loop.live and loop.epoch < loop.epochs:
            if not loop.run_epoch(progress, on_epoch):
                break
            if checkpoint is not None:
                snapshot = loop.state()
                if checkpoint.due():
                    checkpoint.save(snapshot)
    except KeyboardInterrupt:
        if checkpoint is not None and snapshot is not None:
            checkpoint.save(snapshot, interrupted=True)
        raise
    return loop.results  # type: ignore[return-value]


def train(cfg: RunConfig, data: Prepared, *, device: torch.device | None = None,
          on_epoch: Callable[[EpochRecord], None] | None = None,
          progress: Callable[[range], object] | None = None, **kw) -> TrainResult:
    """Train one model as ``cfg`` says on ``data``: train_many of one run."""
    return train_many([cfg], [data], device=device, on_epoch=on_epoch and (lambda j, rec: on_epoch(rec)),
                      progress=progress, **kw)[0]
