"""The training loop, written once, over R models trained side by side.

``rote run`` trains R = 1 model; a sweep with ``--group K`` trains up to K
compatible runs at once. Both go through ``train_many``: the same epochs,
batches, metrics, evaluations, stop rules and results. What differs lives in
``Members``: one plain module for R = 1, or R models' weights stacked and run
through one vmapped forward pass, with finished members dropped as they stop.

Each run keeps what makes it a separate run: its own initialisation, labels,
inputs and data order, its own optimiser state (Adam and SGD are
elementwise, so one optimiser over stacked weights is R independent ones),
its own stop rule and its own record.

The whole dataset lives on the device; a batch is a slice of a per-epoch
permutation. Metrics are accumulated on the device and read once per epoch,
so the host never waits on the device inside an epoch.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from rote.config import RunConfig, fit_threshold, resolve_device, seeds_for
from rote.data.prepare import Prepared
from rote.errors import ConfigError
from rote.models import count_parameters, create_model
from rote.training.metrics import label_entropy
from rote.training.stacked import group_optimizer, stacked_forward, take

EVAL_BATCH = 1000
# A run counts as stuck in an epoch where at least this share of its training
# predictions went to one class: the network has collapsed to a constant.
COLLAPSE_SHARE = 0.99
# ... or an epoch whose mean loss is within this many nats of the label entropy.
COLLAPSE_LOSS_TOL = 0.005
# Logits that vary by less than this over the whole training part do not depend on the input.
LOGIT_SPREAD_TOL = 1e-5
# Any loss above this is divergence even while finite (a cross-entropy of 10^4 nats is no learning).
DIVERGED_LOSS = 1e4
# The per-example record keeps at most this many (epoch, example) cells per run; past it, it keeps
# every k-th epoch (and the last): 2e7 cells are about 180 MB in memory, much less compressed.
EXAMPLE_CELLS = 20_000_000
# settings that must agree for runs to share one stacked model and one optimiser
SHARED_FIELDS = ("dataset", "preprocess", "n_train", "subset", "model", "optimizer", "loss", "lr", "momentum",
                 "weight_decay", "schedule", "step_every", "step_gamma", "batch_size", "val_split", "dropout",
                 "augment_shift", "device", "channels_last")


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums of many losses; Apple's MPS has no float64, so float32 there."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass
class EpochRecord:
    epoch: int
    seconds: float  # training steps only, device synchronised (for a group: the group's epoch)
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
    # the dead-network check, on the epochs it ran (those that look like a plateau)
    dead_share: Optional[float] = None  # the largest share of ReLU units dead on every training image, by layer
    dead_layer: Optional[str] = None  # ... and that layer
    logit_spread: Optional[float] = None  # the largest (max - min) of a logit over the training images

    FIELDS = ("epoch", "seconds", "loss", "acc", "val_loss", "val_acc", "train_loss_full", "train_acc_full",
              "clean_acc", "corrupt_acc", "pred_max_share", "lr", "eval_seconds", "dead_share", "dead_layer",
              "logit_spread")


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
    examples: Optional[dict] = None  # the per-example record (see rote.analysis.examples), when kept
    # a run on a subset: the final model's predictions (eval mode) on its fit rows and on the rows of the
    # training part it left out (Prepared.x_out), for Feldman & Zhang's memorisation scores
    fit_pred: Optional[np.ndarray] = None  # (n_fit,)
    out_pred: Optional[np.ndarray] = None  # (n_out,)


class Stopper:
    """One run's stop rule: diverged, memorised, or collapsed, that is, provably stuck.

    A plateau (at least COLLAPSE_SHARE of the epoch's predictions in one class,
    or a loss within COLLAPSE_LOSS_TOL of the entropy of the label marginal,
    the loss of a model that ignores its input) is cheap to see but not
    final: runs leave it after many epochs. It only decides when to run the
    dead-network check (``diagnose``). A run is collapsed when that check
    finds it dead on ``collapse_patience`` consecutive checks: a ReLU layer
    with no unit active on any training image, or logits that do not depend
    on the input. A plateau that is not dead is a stall: the run goes on.
    """

    def __init__(self, cfg: RunConfig, entropy: Optional[float] = None):
        self.cfg = cfg
        self.entropy = entropy
        self.dead = 0  # consecutive checks that found the network dead
        self.dead_since: Optional[int] = None
        self.stalled_since: Optional[int] = None  # first epoch of the current plateau
        self.outcome, self.message = "unfinished", ""
        self.memorized_epoch: Optional[int] = None
        self.seconds_to_memorize: Optional[float] = None

    def plateau(self, rec: EpochRecord) -> bool:
        """Does this epoch look like a constant predictor? (Then run the dead-network check.)"""
        constant = self.entropy is not None and abs(rec.loss - self.entropy) < COLLAPSE_LOSS_TOL
        return self.cfg.collapse_patience > 0 and (rec.pred_max_share >= COLLAPSE_SHARE or constant)

    def update(self, rec: EpochRecord, elapsed: float) -> bool:
        """Record what this epoch decided; True when the run stops here."""
        c = self.cfg
        if not math.isfinite(rec.loss) or rec.loss > DIVERGED_LOSS:
            self.outcome = "diverged"
            self.message = f"the training loss became {rec.loss:.4g} in epoch {rec.epoch}; try a smaller --lr"
            return True
        if c.stop_at is not None and rec.train_acc_full is not None and rec.train_acc_full >= c.stop_at:
            self.outcome, self.memorized_epoch, self.seconds_to_memorize = "memorized", rec.epoch, elapsed
            return True
        on_plateau = self.plateau(rec)
        self.stalled_since = (self.stalled_since or rec.epoch) if on_plateau else None
        dead = on_plateau and rec.dead_share is not None and (
            rec.dead_share >= 1.0 or (rec.logit_spread is not None and rec.logit_spread < LOGIT_SPREAD_TOL))
        self.dead = self.dead + 1 if dead else 0
        self.dead_since = (self.dead_since or rec.epoch) if dead else None
        if dead and self.dead >= c.collapse_patience:
            self.outcome = "collapsed"
            why = (f"{rec.dead_layer} on every training image" if rec.dead_share >= 1.0 else
                   f"its logits do not depend on the input (largest spread {rec.logit_spread:.1e})")
            self.message = f"collapsed: {why} since epoch {self.dead_since}; try another --seed"
            return True
        if rec.epoch >= c.epochs and self.stalled_since is not None:
            self.message = (f"stalled: on a constant predictor's plateau since epoch {self.stalled_since}, "
                            f"but not dead; more epochs may free it")
        return rec.epoch >= c.epochs

    def result(self, history: list[EpochRecord], *, train: tuple[float, float], test: tuple[float, float, np.ndarray],
               train_seconds: float, seconds_per_epoch: float, n_fit: int, parameters: int) -> TrainResult:
        outcome = self.outcome
        if outcome == "unfinished" and self.cfg.stop_at is None and train[1] >= fit_threshold(None):
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


def lr_at(cfg: RunConfig, epoch: int) -> float:
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** ((epoch - 1) // cfg.step_every)
    return cfg.lr


class AdamKeras1(torch.optim.Optimizer):
    """Adam exactly as Keras 1.2 updates (keras/optimizers.py, Adam.get_updates):

        lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p = p - lr_t * m / (sqrt(v) + eps)

    torch.optim.Adam adds eps to sqrt(v / (1 - b2^t)) instead, so its
    effective eps is sqrt(1 - b2^t) times Keras's: about 30x smaller in the
    first steps, the very window in which some runs collapse.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if not group["weight_decay"] else p.grad + group["weight_decay"] * p
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                st["step"] += 1
                t = st["step"]
                lr_t = group["lr"] * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(st["m"], st["v"].sqrt().add_(group["eps"]), value=-lr_t)


def keras1_cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Keras 1.2's categorical cross-entropy on a softmax output (TensorFlow backend): the
    probabilities renormalised, clipped to [1e-7, 1 - 1e-7], then -log of the label's. Outside
    the clip an example's loss is constant, so it gets no gradient at all."""
    p = torch.softmax(logits, -1)
    p = p / p.sum(-1, keepdim=True)
    loss = -torch.log(p.gather(-1, y.unsqueeze(-1)).squeeze(-1).clamp(1e-7, 1 - 1e-7))
    return {"mean": loss.mean, "sum": loss.sum}.get(reduction, lambda: loss)()


def loss_function(cfg: RunConfig) -> Callable:
    return keras1_cross_entropy if cfg.loss == "keras1" else F.cross_entropy


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam-keras1":
        return AdamKeras1(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        # Keras 1 defaults: lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def memory_format(cfg: RunConfig, device: torch.device, stacked: bool) -> torch.memory_format:
    """channels_last: None (auto) is channels-last for one model on a CPU, where it is faster; a stacked
    (vmapped) forward cannot choose its layout, so it is always contiguous there."""
    wanted = cfg.channels_last if cfg.channels_last is not None else (device.type == "cpu" and not stacked)
    if wanted and stacked:
        raise ConfigError("channels_last=true cannot be honoured by a group of stacked models; "
                          "use channels_last auto or false, or --group 1")
    return torch.channels_last if wanted else torch.contiguous_format


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


def _layer_name(m: torch.nn.Module) -> str:
    if isinstance(m, torch.nn.Conv2d):
        return f"conv {m.out_channels}"
    if isinstance(m, torch.nn.Linear):
        return f"dense {m.out_features}"
    return type(m).__name__


@torch.inference_mode()
def diagnose(model: torch.nn.Module, x: torch.Tensor, forward=None) -> tuple[float, str, float]:
    """The dead-network check on training images x, in eval mode: (largest share of dead ReLU units
    in one layer, that layer's description and count, largest spread of a logit over x).

    A unit is a channel of a convolution or a neuron of a dense layer; it is dead when it is zero
    on every image (and every position). ``forward`` replaces model(x) (for a stacked member).
    """
    active: dict[torch.nn.Module, torch.Tensor] = {}
    names, previous = {}, None
    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            names[m] = _layer_name(previous) if previous is not None else "relu"
        elif not list(m.children()):
            previous = m

    def hook(m, _inp, out):
        alive = (out > 0).flatten(2).any(2) if out.dim() > 2 else out > 0  # (B, units)
        active[m] = active.get(m, False) | alive.any(0)

    handles = [m.register_forward_hook(hook) for m in names]
    lo = hi = None
    try:
        for i in range(0, len(x), EVAL_BATCH):
            out = (forward or model)(x[i:i + EVAL_BATCH]).float()
            lo = out.amin(0) if lo is None else torch.minimum(lo, out.amin(0))
            hi = out.amax(0) if hi is None else torch.maximum(hi, out.amax(0))
    finally:
        for h in handles:
            h.remove()
    share, where = 0.0, "no ReLU layer"
    for m, alive in active.items():
        dead = int((~alive).sum())
        if dead / alive.numel() >= share:
            share, where = dead / alive.numel(), f"{names[m]}: {dead} of {alive.numel()} units dead"
    spread = float((hi - lo).max()) if lo is not None else 0.0
    return share, where, spread


class ExampleRecorder:
    """What happened to every training example at its presentation in every (recorded) epoch.

    Buffers of shape (L, n_fit) live on the device and are filled from the
    logits the training step has anyway; they are read once per epoch.
    """

    def __init__(self, runs: int, n_fit: int, epochs: int, device):
        self.n_fit, self.device = n_fit, device
        self.stride = max(1, math.ceil(epochs * n_fit / EXAMPLE_CELLS))
        self.rows: list[dict[str, list]] = [{k: [] for k in ("epoch", *self.FIELDS)} for _ in range(runs)]

    FIELDS = ("correct", "prob", "margin", "loss", "el2n")

    def start_epoch(self, live: int) -> None:
        self.buf = {k: torch.zeros(live, self.n_fit, device=self.device, dtype=torch.bool if k == "correct"
                                   else torch.float32) for k in self.FIELDS}

    @torch.no_grad()
    def batch(self, idx: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        """idx, y: (L, B); out: (L, B, classes) logits of the training step."""
        out = out.detach().float()
        logp = out.log_softmax(-1)
        lp_y = logp.gather(-1, y[..., None]).squeeze(-1)  # (L, B)
        p_y = lp_y.exp()
        z_y = out.gather(-1, y[..., None]).squeeze(-1)
        others = out.scatter(-1, y[..., None], float("-inf")).amax(-1)
        sq = (logp.exp() ** 2).sum(-1) - p_y ** 2 + (1 - p_y) ** 2  # ||softmax - onehot||^2
        rows = torch.arange(len(idx), device=idx.device)[:, None]
        for k, v in (("correct", out.argmax(-1) == y), ("prob", p_y), ("margin", z_y - others),
                     ("loss", -lp_y), ("el2n", sq.clamp_min(0).sqrt())):
            self.buf[k][rows, idx] = v

    def end_epoch(self, epoch: int, live: list[int], leaving: list[int]) -> None:
        """Keep this epoch for the runs at these live positions: every stride-th epoch, and a run's last."""
        keep = [r for r in range(len(live)) if (epoch - 1) % self.stride == 0 or r in leaving]
        if not keep:
            return
        host = {k: v.cpu() for k, v in self.buf.items()}
        for r in keep:
            row = self.rows[live[r]]
            row["epoch"].append(epoch)
            for k in self.FIELDS:
                row[k].append(host[k][r].numpy().astype(bool if k == "correct" else np.float16))

    def arrays(self, j: int) -> dict:
        row = self.rows[j]
        return {"epoch": np.asarray(row["epoch"], dtype=np.int64),
                **{k: np.stack(row[k]) if row[k] else np.zeros((0, self.n_fit)) for k in self.FIELDS}}


class Members:
    """The R models being trained. R = 1 is a plain module; R > 1 stacks the weights
    (torch.func.stack_module_state) and runs one vmapped forward pass.

    forward: x (R, B, ...) -> logits (R, B, classes); losses: (R,) mean loss of
    each member (each member's gradient is that of its own mean loss).
    """

    def __init__(self, models: list[torch.nn.Module], cfg: RunConfig):
        self.cfg = cfg
        self.loss_fn = loss_function(cfg)
        self.single = models[0] if len(models) == 1 else None
        if self.single is not None:
            self.opt = make_optimizer(cfg, self.single.parameters())
            return
        params, self.buffers = stack_module_state(models)  # each (R, ...)
        self.params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        self.opt = group_optimizer(cfg, list(self.params.values()), make_optimizer)
        # The stacked members run through one module skeleton on the meta device; its training flag
        # is theirs. Buffers (batch norm's running statistics) are stacked like the weights, so in
        # training mode each member updates its own, in place, under vmap.
        self._base = copy.deepcopy(models[0]).to("meta")
        self.template = models[0]  # a real module, to run one member through (the dead-network check)
        # a plain MLP runs as batched matrix products (rote.training.stacked), anything else through vmap
        self._vmapped = stacked_forward(models[0]) or torch.vmap(
            lambda p, b, x: functional_call(self._base, (p, b), (x,)))

    def diagnose(self, r: int, x: torch.Tensor) -> tuple[float, str, float]:
        """The dead-network check (see ``diagnose``) of the member at row r, in eval mode."""
        if self.single is not None:
            self.single.eval()
            try:
                return diagnose(self.single, x)
            finally:
                self.single.train()
        params = {n: p.detach()[r] for n, p in self.params.items()}
        buffers = {n: b[r].clone() for n, b in self.buffers.items()}  # eval mode reads them; never write back
        self.template.eval()
        return diagnose(self.template, x, forward=lambda xb: functional_call(self.template, (params, buffers), (xb,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.single is not None:
            return self.single(x[0]).unsqueeze(0)
        return self._vmapped(self.params, self.buffers, x)

    def losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.single is not None:
            return self.loss_fn(out[0], y[0]).unsqueeze(0)
        return self.loss_fn(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)

    def loss_sums(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.single is not None:
            return self.loss_fn(out[0], y[0], reduction="sum").unsqueeze(0)
        return self.loss_fn(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).sum(1)

    def step(self, losses: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.opt.step()

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def train(self, mode: bool = True) -> None:
        """Training or evaluation mode: batch norm's batch or running statistics (stacked members run no
        dropout: runs with dropout are never grouped)."""
        (self.single if self.single is not None else self._base).train(mode)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the stacked members at ``rows``, with their optimiser state."""
        old = list(self.params.values())
        state = [self.opt.state.get(p, {}) for p in old]
        lr = self.opt.param_groups[0]["lr"]
        self.params = {n: p.detach()[rows].clone().requires_grad_(True) for n, p in self.params.items()}
        self.buffers = {n: b[rows] for n, b in self.buffers.items()}
        self.opt = group_optimizer(self.cfg, list(self.params.values()), make_optimizer)
        self.set_lr(lr)
        for p, st in zip(self.params.values(), state):
            if st:
                self.opt.state[p] = {k: (v[rows].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                                     for k, v in st.items()}


def _check_shared(cfgs: list[RunConfig]) -> None:
    differ = [f for f in SHARED_FIELDS if len({getattr(c, f) for c in cfgs}) > 1]
    if differ or (len(cfgs) > 1 and any(c.dropout or c.augment_shift for c in cfgs)):
        raise ConfigError("runs trained together must share " + ", ".join(differ or SHARED_FIELDS)
                          + " and use no dropout or shifts (their per-step randomness is per model)")


def train_many(cfgs: list[RunConfig], datas: list[Prepared], *, device: torch.device | None = None,
               on_epoch: Callable[[int, EpochRecord], None] | None = None,
               progress: Callable[[range], object] | None = None) -> list[TrainResult]:
    """Train len(cfgs) runs side by side (see the module docstring); one TrainResult each.

    on_epoch(j, rec) is called with run j's record of each epoch as soon as it
    is known (for logging and for writing history as it grows). progress, if
    given, wraps the range of batch starts of an epoch (a progress bar).
    """
    _check_shared(cfgs)
    cfg0, R = cfgs[0], len(cfgs)
    device = device or resolve_device(cfg0.device)
    classes = datas[0].classes
    in_shape = tuple(datas[0].x_fit.shape[1:])
    layout = memory_format(cfg0, device, stacked=R > 1) if len(in_shape) == 3 else torch.contiguous_format
    seeds = [seeds_for(c.seed) for c in cfgs]
    models = [create_model(c.model, in_shape=in_shape, classes=classes, dropout=c.dropout, init=c.init,
                           generator=torch.Generator().manual_seed(s["init"])).to(device=device, memory_format=layout)
              for c, s in zip(cfgs, seeds)]
    n_params = count_parameters(models[0])
    members = Members(models, cfg0)
    del models
    order = [torch.Generator().manual_seed(s["order"]) for s in seeds]
    aug_gen = torch.Generator().manual_seed(seeds[0]["augment"])  # shifts are never stacked: R = 1

    def put(name: str) -> torch.Tensor:
        """One array of every member, on the device: (R, n, ...)."""
        ts = [torch.from_numpy(np.ascontiguousarray(getattr(d, name))).to(device) for d in datas]
        if R == 1:  # keep the single model's layout exactly (the layout changes the last bits of a conv)
            t = ts[0]
            return (t.contiguous(memory_format=layout) if t.dim() == 4 else t).unsqueeze(0)
        return torch.stack(ts)

    x_fit, y_fit, x_val, y_val = put("x_fit"), put("y_fit"), put("x_val"), put("y_val")
    x_test, y_test = put("x_test"), put("y_test")
    held_out = len(datas[0].out_index) > 0  # runs on a subset (all members alike: they share `subset`)
    x_out, y_out = (put("x_out"), put("y_out")) if held_out else (None, None)
    changed = torch.stack([torch.from_numpy(d.changed[d.fit_index]) for d in datas]).to(device)  # (R, n_fit)
    n_fit, bs = x_fit.shape[1], cfg0.batch_size
    background = float(datas[0].x_fit.min()) if n_fit else 0.0
    stoppers = [Stopper(c, label_entropy(d.y_fit, d.classes)) for c, d in zip(cfgs, datas)]
    histories: list[list[EpochRecord]] = [[] for _ in cfgs]
    results: list[Optional[TrainResult]] = [None] * R
    acc_dtype = accumulator_dtype(device)
    live = list(range(R))  # the run index of each member still training
    recorder = ExampleRecorder(R, n_fit, max(c.epochs for c in cfgs), device) if cfg0.record_examples else None

    @torch.inference_mode()
    def evaluate(x, y, rows: list[int]):
        """(loss, acc, pred (len(rows), N)) of the members at these rows, in eval mode and large batches."""
        members.train(False)
        params_rows = torch.tensor(rows, device=device)
        if members.single is None:
            saved = members.params, members.buffers
            members.params = {n: p.detach()[params_rows] for n, p in saved[0].items()}
            members.buffers = {n: b[params_rows] for n, b in saved[1].items()}
        data_rows = [live[r] for r in rows]
        x, y = (x, y) if R == 1 else (x[data_rows], y[data_rows])
        total = torch.zeros(len(rows), dtype=acc_dtype, device=device)
        preds = []
        for i in range(0, x.shape[1], EVAL_BATCH):
            out = members.forward(x[:, i:i + EVAL_BATCH])  # (r, b, classes)
            total += members.loss_sums(out, y[:, i:i + EVAL_BATCH]).to(acc_dtype)
            preds.append(out.argmax(-1))
        if members.single is None:
            members.params, members.buffers = saved
        members.train(True)
        pred = torch.cat(preds, 1) if preds else torch.zeros(len(rows), 0, dtype=torch.long, device=device)
        n = max(x.shape[1], 1)
        accs = [float(c) / n for c in (pred == y).sum(1).tolist()]
        return [float(t) / n for t in total.tolist()], accs, pred

    elapsed = 0.0
    members.train(True)
    for epoch in range(1, max(c.epochs for c in cfgs) + 1):
        lr = lr_at(cfg0, epoch)
        members.set_lr(lr)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        L = len(live)
        perms = torch.stack([torch.randperm(n_fit, generator=order[j]) for j in live]).to(device)  # (L, n_fit)
        rows = torch.tensor(live, device=device)[:, None]  # each member's row of the data
        loss_sum = torch.zeros(L, device=device)
        correct = torch.zeros(L, device=device, dtype=torch.long)
        hist = torch.zeros(L, classes, device=device, dtype=torch.long)
        starts = range(0, n_fit, bs)
        if recorder:
            recorder.start_epoch(L)
        for i in (progress(starts) if progress else starts):
            idx = perms[:, i:i + bs]  # (L, B)
            if R == 1:
                xb, yb = x_fit[0][idx[0]].unsqueeze(0), y_fit[0][idx[0]].unsqueeze(0)  # (1, B, C, H, W), (1, B)
            else:
                xb, yb = take(x_fit, rows, idx), take(y_fit, rows, idx)
            if cfg0.augment_shift:
                xb = shift_batch(xb[0], cfg0.augment_shift, aug_gen, background).unsqueeze(0)
            out = members.forward(xb)  # (L, B, classes)
            losses = members.losses(out, yb)
            members.step(losses)
            if recorder:
                recorder.batch(idx, out, yb)
            with torch.no_grad():
                pred = out.argmax(-1)
                loss_sum += losses.detach() * idx.shape[1]
                correct += (pred == yb).sum(1)
                hist += F.one_hot(pred, classes).sum(1)
        run_loss = [v / n_fit for v in loss_sum.tolist()]  # the one host sync of the epoch
        seconds = time.perf_counter() - t0
        elapsed += seconds
        run_acc = [float(c) / n_fit for c in correct.tolist()]
        shares = [float(m) / n_fit for m in hist.max(1).values.tolist()]

        t1 = time.perf_counter()
        everyone = list(range(L))
        val = evaluate(x_val, y_val, everyone) if x_val.shape[1] else ([math.nan] * L, [math.nan] * L, None)
        need_full = [r for r, j in enumerate(live)
                     if (cfgs[j].stop_at is not None and run_acc[r] >= cfgs[j].stop_at)
                     or (cfgs[j].eval_every and epoch % cfgs[j].eval_every == 0) or epoch == cfgs[j].epochs]
        full = {}
        if need_full:
            f_loss, f_acc, f_pred = evaluate(x_fit, y_fit, need_full)
            for m, r in enumerate(need_full):
                hits, ch = f_pred[m] == y_fit[0 if R == 1 else live[r]], changed[live[r]]
                full[r] = (f_loss[m], f_acc[m], float(hits[ch].float().mean()) if bool(ch.any()) else None,
                           float(hits[~ch].float().mean()) if bool((~ch).any()) else None)
        eval_seconds = time.perf_counter() - t1
        leaving = []
        for r, j in enumerate(live):
            rec = EpochRecord(epoch=epoch, seconds=seconds, loss=run_loss[r], acc=run_acc[r], val_loss=val[0][r],
                              val_acc=val[1][r], pred_max_share=shares[r], lr=lr, eval_seconds=eval_seconds)
            if r in full:
                rec.train_loss_full, rec.train_acc_full, rec.corrupt_acc, rec.clean_acc = full[r]
            if stoppers[j].plateau(rec):
                rec.dead_share, rec.dead_layer, rec.logit_spread = members.diagnose(r, x_fit[0 if R == 1 else j])
            histories[j].append(rec)
            if on_epoch:
                on_epoch(j, rec)
            if stoppers[j].update(rec, elapsed):
                leaving.append(r)
        if recorder:
            recorder.end_epoch(epoch, live, leaving)
        for r in leaving:
            j = live[r]
            f = full.get(r) or [v[0] for v in evaluate(x_fit, y_fit, [r])[:2]]
            t_loss, t_acc, t_pred = evaluate(x_test, y_test, [r])
            results[j] = stoppers[j].result(
                histories[j], train=(f[0], f[1]), test=(t_loss[0], t_acc[0], t_pred[0].cpu().numpy()),
                train_seconds=elapsed, seconds_per_epoch=steady_seconds(histories[j]) / L, n_fit=n_fit,
                parameters=n_params)
            if recorder:
                results[j].examples = recorder.arrays(j)
            if held_out:
                results[j].fit_pred = evaluate(x_fit, y_fit, [r])[2][0].cpu().numpy()
                results[j].out_pred = evaluate(x_out, y_out, [r])[2][0].cpu().numpy()
        if leaving:
            live = [j for r, j in enumerate(live) if r not in leaving]
            if not live:
                break
            members.keep(torch.tensor([r for r in range(L) if r not in leaving], device=device))
    return results  # type: ignore[return-value]


def train(cfg: RunConfig, data: Prepared, *, device: torch.device | None = None,
          on_epoch: Callable[[EpochRecord], None] | None = None,
          progress: Callable[[range], object] | None = None) -> TrainResult:
    """Train one model as ``cfg`` says on ``data``: train_many with R = 1."""
    return train_many([cfg], [data], device=device, on_epoch=on_epoch and (lambda j, rec: on_epoch(rec)),
                      progress=progress)[0]
