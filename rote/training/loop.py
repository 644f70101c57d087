"""The training loop: one call that the CLI, sweeps, tests and Ray workers share.

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

from rote.config import MEMORIZED_AT, RunConfig, fit_threshold
from rote.config import resolve_device, seeds_for
from rote.data.prepare import Prepared
from rote.errors import ConfigError
from rote.models import count_parameters, create_model
from rote.training.metrics import label_entropy

EVAL_BATCH = 1000
# A run counts as stuck in an epoch where at least this share of its training
# predictions went to one class: the network has collapsed to a constant.
COLLAPSE_SHARE = 0.99
# ... or an epoch whose mean loss is within this many nats of the label entropy.
COLLAPSE_LOSS_TOL = 0.005


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums of many losses; Apple's MPS has no float64, so float32 there."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass
class EpochRecord:
    epoch: int
    seconds: float  # training steps only, device synchronised
    loss: float  # running mean over the epoch's batches, as Keras prints it
    acc: float
    val_loss: float
    val_acc: float
    train_loss_full: Optional[float] = None  # whole training part, eval mode, after the epoch
    train_acc_full: Optional[float] = None
    clean_acc: Optional[float] = None  # ... on the examples whose label was not changed
    corrupt_acc: Optional[float] = None  # ... on those whose label was changed
    pred_max_share: float = 0.0  # share of the epoch's predictions that went to the commonest class
    lr: float = 0.0
    eval_seconds: float = 0.0

    FIELDS = ("epoch", "seconds", "loss", "acc", "val_loss", "val_acc", "train_loss_full", "train_acc_full",
              "clean_acc", "corrupt_acc", "pred_max_share", "lr", "eval_seconds")


@dataclass
class TrainResult:
    outcome: str  # memorized | collapsed | unfinished | diverged
    epochs: int
    history: list[EpochRecord]
    memorized_epoch: Optional[int]
    seconds_to_memorize: Optional[float]
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    test_pred: np.ndarray
    train_seconds: float
    seconds_per_epoch: float
    images_per_second: float
    parameters: int
    message: str = ""


class Stopper:
    """Counts the consecutive epochs in which a run looks collapsed.

    An epoch counts when at least COLLAPSE_SHARE of its training predictions
    went to one class, or when its loss sits within COLLAPSE_LOSS_TOL of the
    entropy of the label marginal: the loss of a model that ignores its input.
    The second catches runs that hover at a constant predictor while their
    predictions wander between a few classes.
    """

    def __init__(self, cfg: RunConfig, entropy: Optional[float] = None):
        self.cfg = cfg
        self.entropy = entropy
        self.stuck = 0
        self.outcome, self.message = "unfinished", ""
        self.memorized_epoch: Optional[int] = None
        self.seconds_to_memorize: Optional[float] = None

    def collapsed(self, rec: EpochRecord) -> bool:
        if self.cfg.collapse_patience == 0:
            return False
        constant = self.entropy is not None and abs(rec.loss - self.entropy) < COLLAPSE_LOSS_TOL
        self.stuck = self.stuck + 1 if rec.pred_max_share >= COLLAPSE_SHARE or constant else 0
        return self.stuck >= self.cfg.collapse_patience

    def update(self, rec: EpochRecord, elapsed: float) -> bool:
        """Record what this epoch decided; True when the run stops here.

        Sets outcome (diverged, memorized or collapsed), message, and for a
        memorised run the epoch and training seconds it took.
        """
        c = self.cfg
        if not math.isfinite(rec.loss):
            self.outcome = "diverged"
            self.message = f"the training loss became {rec.loss} in epoch {rec.epoch}; try a smaller --lr"
        elif c.stop_at is not None and rec.train_acc_full is not None and rec.train_acc_full >= c.stop_at:
            self.outcome, self.memorized_epoch, self.seconds_to_memorize = "memorized", rec.epoch, elapsed
        elif self.collapsed(rec):
            self.outcome = "collapsed"
            self.message = (f"collapsed: for {c.collapse_patience} epochs the network predicted (almost) one class, "
                            f"or its loss sat at the label entropy (loss {rec.loss:.4f}, label entropy "
                            f"{self.entropy:.4f}, {rec.pred_max_share:.0%} of the last epoch's predictions in one "
                            f"class); try another --seed")
        else:
            return False
        return True

    def result(self, history: list[EpochRecord], *, train: tuple[float, float], test: tuple[float, float, np.ndarray],
               train_seconds: float, seconds_per_epoch: float, n_fit: int, parameters: int) -> TrainResult:
        """The run's TrainResult, from its history and the final evaluations."""
        outcome = self.outcome
        if outcome == "unfinished" and self.cfg.stop_at is None and train[1] >= MEMORIZED_AT:
            outcome = "memorized"  # --stop-at none runs every epoch; it still says whether the set was fitted
        return TrainResult(
            outcome=outcome, epochs=len(history), history=history, memorized_epoch=self.memorized_epoch,
            seconds_to_memorize=self.seconds_to_memorize, train_loss=train[0], train_acc=train[1],
            val_loss=history[-1].val_loss, val_acc=history[-1].val_acc, test_loss=test[0], test_acc=test[1],
            test_pred=test[2], train_seconds=train_seconds, seconds_per_epoch=seconds_per_epoch,
            images_per_second=n_fit / seconds_per_epoch if seconds_per_epoch > 0 else math.nan,
            parameters=parameters, message=self.message)


def steady_seconds(history: list[EpochRecord]) -> float:
    """Median seconds per epoch, leaving out the first (one-off warm-up costs) when there are others."""
    return float(np.median([r.seconds for r in history[1:]] or [r.seconds for r in history]))


def _optimizer(cfg: RunConfig, params):
    if cfg.optimizer == "adam":
        # Keras 1 defaults: lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lr_at(cfg: RunConfig, epoch: int) -> float:
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** ((epoch - 1) // cfg.step_every)
    return cfg.lr


def shift_batch(x: torch.Tensor, k: int, gen: torch.Generator, background: float) -> torch.Tensor:
    """Shift each image by its own random offset of up to k pixels, filling with background."""
    b, c, h, w = x.shape
    padded = F.pad(x, (k, k, k, k), value=background)  # (B, C, H+2k, W+2k)
    off = torch.randint(0, 2 * k + 1, (2, b), generator=gen, device=gen.device).to(x.device)
    rows = off[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = off[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return out.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else out.contiguous()


@torch.inference_mode()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and predictions over (x, y), in eval mode and large batches."""
    was_training = model.training
    model.eval()
    acc_dtype = accumulator_dtype(x.device)
    total = torch.zeros((), device=x.device, dtype=acc_dtype)
    preds = []
    for i in range(0, len(x), EVAL_BATCH):
        out = model(x[i:i + EVAL_BATCH])
        total += F.cross_entropy(out, y[i:i + EVAL_BATCH], reduction="sum").to(acc_dtype)
        preds.append(out.argmax(1))
    model.train(was_training)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=x.device)
    n = max(len(x), 1)
    return float(total) / n, float((pred == y).sum()) / n, pred


def train(cfg: RunConfig, data: Prepared, *, device: torch.device | None = None,
          on_epoch: Callable[[EpochRecord], None] | None = None,
          progress: Callable[[int], object] | None = None) -> TrainResult:
    """Train one model as ``cfg`` says on ``data``; return its history and final numbers.

    on_epoch is called with each epoch's record as soon as it is known (for
    logging and for writing history as it grows). progress, if given, wraps
    the range of batch indices of an epoch (a progress bar).
    """
    device = device or resolve_device(cfg.device)
    s = seeds_for(cfg.seed)
    init_gen = torch.Generator().manual_seed(s["init"])
    order_gen = torch.Generator().manual_seed(s["order"])
    aug_gen = torch.Generator().manual_seed(s["augment"])
    in_shape = tuple(data.x_fit.shape[1:])
    model = create_model(cfg.model, in_shape=in_shape, classes=data.classes, dropout=cfg.dropout,
                         init=cfg.init, generator=init_gen)
    layout = torch.channels_last if cfg.channels_last and len(in_shape) == 3 else torch.contiguous_format
    model = model.to(device=device, memory_format=layout)
    opt = _optimizer(cfg, model.parameters())

    def put(a):
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        return t.contiguous(memory_format=layout) if t.dim() == 4 else t

    x_fit, y_fit = put(data.x_fit), put(data.y_fit)
    x_val, y_val = put(data.x_val), put(data.y_val)
    x_test, y_test = put(data.x_test), put(data.y_test)
    changed_fit = put(data.changed[: len(data.y_fit)])
    n_fit, bs = len(x_fit), cfg.batch_size
    background = float(data.x_fit.min()) if n_fit else 0.0

    stopper = Stopper(cfg, label_entropy(data.y_fit, data.classes))
    history: list[EpochRecord] = []
    elapsed = 0.0
    full = None  # (loss, acc) of the last full-train evaluation, and the epoch it was made
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        lr = _lr_at(cfg, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n_fit, generator=order_gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        hist = torch.zeros(data.classes, device=device, dtype=torch.long)
        starts = range(0, n_fit, bs)
        for i in (progress(starts) if progress else starts):
            idx = perm[i:i + bs]
            xb, yb = x_fit[idx], y_fit[idx]  # (B, 1, 28, 28), (B,)
            if cfg.augment_shift:
                xb = shift_batch(xb, cfg.augment_shift, aug_gen, background)
            out = model(xb)  # (B, classes)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                pred = out.argmax(1)
                loss_sum += loss.detach() * len(idx)
                correct += (pred == yb).sum()
                hist += torch.bincount(pred, minlength=data.classes)
        run_loss = float(loss_sum) / n_fit  # the one host sync of the epoch
        seconds = time.perf_counter() - t0
        elapsed += seconds
        run_acc = float(correct) / n_fit

        t1 = time.perf_counter()
        val_loss, val_acc, _ = evaluate(model, x_val, y_val, data.classes) if len(x_val) else (math.nan, math.nan, None)
        rec = EpochRecord(epoch=epoch, seconds=seconds, loss=run_loss, acc=run_acc, val_loss=val_loss,
                          val_acc=val_acc, pred_max_share=float(hist.max()) / n_fit, lr=lr)
        threshold_hit = cfg.stop_at is not None and run_acc >= cfg.stop_at
        if threshold_hit or (cfg.eval_every and epoch % cfg.eval_every == 0) or epoch == cfg.epochs:
            f_loss, f_acc, f_pred = evaluate(model, x_fit, y_fit, data.classes)
            rec.train_loss_full, rec.train_acc_full = f_loss, f_acc
            hits = f_pred == y_fit
            if bool(changed_fit.any()):
                rec.corrupt_acc = float(hits[changed_fit].float().mean())
            if bool((~changed_fit).any()):
                rec.clean_acc = float(hits[~changed_fit].float().mean())
            full = (f_loss, f_acc, epoch)
        rec.eval_seconds = time.perf_counter() - t1
        history.append(rec)
        if on_epoch:
            on_epoch(rec)

        if stopper.update(rec, elapsed):
            break

    if full is None or full[2] != len(history):
        f_loss, f_acc, _ = evaluate(model, x_fit, y_fit, data.classes)
    else:
        f_loss, f_acc = full[0], full[1]
    test_loss, test_acc, test_pred = evaluate(model, x_test, y_test, data.classes)
    return stopper.result(history, train=(f_loss, f_acc), test=(test_loss, test_acc, test_pred.cpu().numpy()),
                          train_seconds=elapsed, seconds_per_epoch=steady_seconds(history), n_fit=n_fit,
                          parameters=count_parameters(model))
