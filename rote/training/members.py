"""The models a training loop trains: one model, or R models stacked and run as one, behind one interface.

The loop sees R members and tensors with a leading member axis: a batch is
(R, B, ...), logits are (R, B, classes), losses (R,). ``OneModel`` is a plain
module (R = 1, the layout and arithmetic of an ordinary PyTorch loop, bit for
bit); ``StackedModels`` holds R models' weights stacked
(torch.func.stack_module_state) and runs one vmapped forward pass, and drops
members as they finish. ``build_members`` makes either, for the loop and for
the sweep's time estimate alike.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch.func import functional_call, stack_module_state

from rote.config import RunConfig
from rote.errors import ConfigError
from rote.models import count_parameters
from rote.training.optim import loss_function, make_optimizer
from rote.training.stacked import group_optimizer, stacked_forward

EVAL_BATCH = 1000


def memory_format(cfg: RunConfig, device: torch.device, stacked: bool) -> torch.memory_format:
    """channels_last: None (auto) is channels-last for one model on a CPU, where it is faster; a stacked
    (vmapped) forward cannot choose its layout, so it is always contiguous there."""
    wanted = cfg.channels_last if cfg.channels_last is not None else (device.type == "cpu" and not stacked)
    if wanted and stacked:
        raise ConfigError("channels_last=true cannot be honoured by a group of stacked models; "
                          "use channels_last auto or false, or --group 1")
    return torch.channels_last if wanted else torch.contiguous_format


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


def _clone(obj):
    """A copy of a state (dicts, lists, tensors) that later training steps cannot change."""
    if torch.is_tensor(obj):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


class Members:
    """R models trained side by side.

    forward: x (R, B, ...) -> logits (R, B, classes); losses: (R,) mean loss of
    each member (each member's gradient is that of its own mean loss);
    loss_sums: (R,) summed losses (evaluation). ``select(rows)`` gives the
    members at ``rows`` to evaluate (same weights, no optimiser); ``keep(rows)``
    drops the others for good, with their optimiser state.
    """

    count: int
    parameters: int  # of one member

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.loss_fn = loss_function(cfg)
        self.opt: Optional[torch.optim.Optimizer] = None

    def __len__(self) -> int:
        return self.count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)

    def loss_sums(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).sum(1)

    def step(self, losses: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.opt.step()

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def train(self, mode: bool = True) -> None:
        raise NotImplementedError

    def select(self, rows: list[int]) -> "Members":
        raise NotImplementedError

    def keep(self, rows: list[int]) -> None:
        raise NotImplementedError

    def diagnose(self, r: int, x: torch.Tensor) -> tuple[float, str, float]:
        """The dead-network check (see ``diagnose``) of member r on its images x (n, ...), in eval mode."""
        raise NotImplementedError

    def state(self) -> dict:
        """Weights, buffers and optimiser state, copied (a checkpoint)."""
        raise NotImplementedError

    def weights(self, r: int) -> dict[str, torch.Tensor]:
        """Member r's state_dict (weights and buffers), copied to the CPU: what ``--save-model`` keeps."""
        raise NotImplementedError

    def load_state(self, state: dict) -> None:
        raise NotImplementedError


class OneModel(Members):
    """One plain module: what ``rote run`` trains, exactly as an ordinary PyTorch loop would."""

    def __init__(self, model: torch.nn.Module, cfg: RunConfig):
        super().__init__(cfg)
        self.count, self.model = 1, model
        self.parameters = count_parameters(model)
        self.opt = make_optimizer(cfg, model.parameters())

    def forward(self, x):
        return self.model(x[0]).unsqueeze(0)

    # the plain loss of one model (its mean, not a mean over a reshaped batch: the last bits differ)
    def losses(self, out, y):
        return self.loss_fn(out[0], y[0]).unsqueeze(0)

    def loss_sums(self, out, y):
        return self.loss_fn(out[0], y[0], reduction="sum").unsqueeze(0)

    def train(self, mode=True):
        self.model.train(mode)

    def select(self, rows):
        assert list(rows) == [0], rows
        return self

    def keep(self, rows):
        if list(rows) != [0]:
            raise ValueError(f"one model cannot keep rows {rows}")

    def diagnose(self, r, x):
        self.model.eval()
        try:
            return diagnose(self.model, x)
        finally:
            self.model.train()

    def state(self):
        return {"model": _clone(self.model.state_dict()), "opt": _clone(self.opt.state_dict())}

    def load_state(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def weights(self, r):
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}


class StackedModels(Members):
    """R models' weights stacked along a new first axis, run through one vmapped forward pass."""

    def __init__(self, models: list[torch.nn.Module], cfg: RunConfig):
        super().__init__(cfg)
        self.count = len(models)
        self.parameters = count_parameters(models[0])
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

    def forward(self, x):
        return self._vmapped(self.params, self.buffers, x)

    def train(self, mode=True):
        """Training or evaluation mode: batch norm's batch or running statistics (stacked members run no
        dropout: runs with dropout are never grouped)."""
        self._base.train(mode)

    def select(self, rows):
        if list(rows) == list(range(self.count)):
            return self
        view = copy.copy(self)  # shares the skeleton; its own (detached) rows of weights, no optimiser
        at = torch.tensor(rows, device=next(iter(self.params.values())).device)
        view.count, view.opt = len(rows), None
        view.params = {n: p.detach()[at] for n, p in self.params.items()}
        view.buffers = {n: b[at] for n, b in self.buffers.items()}
        return view

    def keep(self, rows):
        """Keep only the members at ``rows``, with their optimiser state."""
        at = torch.tensor(rows, device=next(iter(self.params.values())).device)
        old = list(self.params.values())
        state = [self.opt.state.get(p, {}) for p in old]
        lr = self.opt.param_groups[0]["lr"]
        self.count = len(rows)
        self.params = {n: p.detach()[at].clone().requires_grad_(True) for n, p in self.params.items()}
        self.buffers = {n: b[at] for n, b in self.buffers.items()}
        self.opt = group_optimizer(self.cfg, list(self.params.values()), make_optimizer)
        self.set_lr(lr)
        for p, st in zip(self.params.values(), state):
            if st:
                self.opt.state[p] = {k: (v[at].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                                     for k, v in st.items()}

    def diagnose(self, r, x):
        params = {n: p.detach()[r] for n, p in self.params.items()}
        buffers = {n: b[r].clone() for n, b in self.buffers.items()}  # eval mode reads them; never write back
        self.template.eval()
        return diagnose(self.template, x, forward=lambda xb: functional_call(self.template, (params, buffers), (xb,)))

    def state(self):
        return {"params": _clone(self.params), "buffers": _clone(self.buffers), "opt": _clone(self.opt.state_dict())}

    def weights(self, r):
        return {n: t.detach()[r].cpu().clone() for n, t in {**self.params, **self.buffers}.items()}

    def load_state(self, state):
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in state["params"].items()}
        self.buffers = {n: b.clone() for n, b in state["buffers"].items()}
        self.count = len(next(iter(self.params.values())))
        self.opt = group_optimizer(self.cfg, list(self.params.values()), make_optimizer)
        self.opt.load_state_dict(state["opt"])


def build_members(cfgs: list[RunConfig], in_shape: tuple, classes: int, device: torch.device,
                  init_seeds: list[int]) -> Members:
    """The models of these runs (one member each, initialised from init_seeds), on the device in the
    layout the loop uses: one ``OneModel`` for one run, else ``StackedModels``."""
    from rote import models as registry  # looked up at call time (a test may wrap create_model)

    stacked = len(cfgs) > 1
    fmt = input_layout(cfgs[0], device, len(cfgs), in_shape)
    models = [registry.create_model(c.model, in_shape=tuple(in_shape), classes=classes, dropout=c.dropout,
                                    init=c.init, generator=torch.Generator().manual_seed(s))
              .to(device=device, memory_format=fmt) for c, s in zip(cfgs, init_seeds)]
    return StackedModels(models, cfgs[0]) if stacked else OneModel(models[0], cfgs[0])


def input_layout(cfg: RunConfig, device: torch.device, members: int, in_shape: tuple) -> torch.memory_format:
    """The memory layout of the images the members read (that of their weights)."""
    return memory_format(cfg, device, members > 1) if len(in_shape) == 3 else torch.contiguous_format
