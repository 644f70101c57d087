"""Optimisers, losses and the learning-rate schedule, including Keras 1.2's own Adam and cross-entropy."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from rote.config import RunConfig
from rote.errors import ConfigError


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """The learning rate of epoch (1-based): a linear warm-up over warmup_epochs, then the schedule
    ("constant"; "step": x step_gamma every step_every epochs; "cosine": from lr down to 0 over the rest of the
    epoch budget, half a cosine)."""
    w = cfg.warmup_epochs
    if w and epoch <= w:
        return cfg.lr * epoch / w
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** ((epoch - 1) // cfg.step_every)
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - w)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(epoch - 1 - w, span) / span))
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
        # foreach: one kernel per operation over all the tensors instead of one per tensor (PyTorch picks it
        # by itself on a GPU only); the same arithmetic element by element, and on a CPU the difference
        # between a tiny model's step taking 0.7 ms and 0.2 ms in Adam alone (benchmarks/bench.py --tiny)
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay,
                                foreach=True)
    if cfg.optimizer == "adamw":  # decoupled weight decay (Loshchilov & Hutter); Adam's betas and eps
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay,
                                 foreach=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               foreach=True)
    return build_user_optimizer(cfg, params)


def load_optimizer_factory(name: str) -> Callable:
    """Import a user's ``package.module:function``; ConfigError (one line) if it is not there or not callable.

    The factory is called as ``function(params, cfg)`` with the parameters to train and the run's RunConfig
    (cfg.lr, cfg.momentum, cfg.weight_decay, ...) and returns a torch.optim.Optimizer; rote sets each param
    group's ``lr`` every epoch from cfg.lr and the schedule."""
    from rote.config import OPTIMIZERS
    from rote.plugins import import_callable

    return import_callable(name, "optimizer", ", ".join(OPTIMIZERS), "(params, cfg) -> torch.optim.Optimizer")


def build_user_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """A user's optimizer, called with the parameters and the run's settings; ConfigError unless it returns
    a torch.optim.Optimizer."""
    factory = load_optimizer_factory(cfg.optimizer)
    try:
        opt = factory(params, cfg)
    except Exception as e:
        raise ConfigError(f"optimizer '{cfg.optimizer}': calling it raised {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(f"optimizer '{cfg.optimizer}' returned a {type(opt).__name__}, not a torch.optim.Optimizer")
    return opt


def check_optimizer(cfg: RunConfig) -> None:
    """Build the run's optimizer on one throw-away parameter: a user's factory that fails says so in one line
    before a run directory is made."""
    from rote.config import is_optimizer_factory

    if is_optimizer_factory(cfg.optimizer):
        build_user_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
