"""A faster forward pass for a group of stacked MLPs: batched matrix products instead of vmap.

A group of R models runs through torch.vmap over torch.func.functional_call
(rote.training.loop.Members). For a tiny model that costs more than the
arithmetic: vmap and functional_call rebuild the call for every layer of every
step. An MLP (Flatten, then Linear and ReLU layers, which is all `mlp:W`
builds without dropout) is simply R matrix products per layer, so for those
the group runs torch.baddbmm on the stacked weights directly: the same
function of the same weights, in fewer and larger operations.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


def stacked_forward(model: nn.Module) -> Optional[Callable]:
    """f(params, buffers, x) for R stacked copies of ``model`` when it is a plain MLP, else None.

    params are named as model.named_parameters() names them, each (R, ...);
    x is (R, B, ...) and the result (R, B, classes).
    """
    if not isinstance(model, nn.Sequential) or any(True for _ in model.buffers()):
        return None
    layers: list[tuple[str, Optional[str]]] = []
    for i, (name, m) in enumerate(model.named_children()):
        if isinstance(m, nn.Flatten) and i == 0 and m.start_dim == 1 and m.end_dim == -1:
            continue
        if isinstance(m, nn.Linear):
            layers.append(("linear", name))
        elif type(m) is nn.ReLU:
            layers.append(("relu", None))
        else:
            return None
    if not layers or layers[0][0] != "linear" or not isinstance(model[0], nn.Flatten):
        return None

    def forward(params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(2)  # (R, B, C*H*W), as nn.Flatten does for each member
        for kind, name in layers:
            if kind == "relu":
                h = torch.relu(h)
                continue
            h = _StackedLinear.apply(h, params[f"{name}.weight"], params.get(f"{name}.bias"))  # (R, B, out)
        return h

    return forward


class _StackedLinear(torch.autograd.Function):
    """R linear layers at once: h (R, B, in), w (R, out, in), b (R, out) or None -> (R, B, out).

    Written out because the products run fastest on a CPU in the orientation that keeps w as it is
    stored, (out, in): about twice as fast as autograd's own backward of baddbmm for a tiny MLP."""

    @staticmethod
    def forward(ctx, h, w, b):
        ctx.save_for_backward(h, w)
        ctx.has_bias = b is not None
        out = torch.bmm(w, h.transpose(1, 2)).transpose(1, 2)  # (R, out, B) -> (R, B, out)
        return out + b.unsqueeze(1) if b is not None else out

    @staticmethod
    def backward(ctx, g):  # g (R, B, out)
        h, w = ctx.saved_tensors
        gh = torch.bmm(g, w) if ctx.needs_input_grad[0] else None  # (R, B, in); not for the input images
        gw = torch.bmm(g.transpose(1, 2), h) if ctx.needs_input_grad[1] else None  # (R, out, in)
        gb = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gh, gw, gb


def take(x: torch.Tensor, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[rows, idx] for x (R, n, ...), rows (L, 1) and idx (L, B): the same rows, copied by one index_select
    on a flat view, several times faster on a CPU than advanced indexing over two dimensions."""
    n = x.shape[1]
    flat = (rows * n + idx).reshape(-1)  # (L*B,)
    return x.reshape(-1, *x.shape[2:]).index_select(0, flat).view(*idx.shape, *x.shape[2:])


def group_optimizer(cfg, params: list, make: Callable):
    """The optimiser of a stacked group: plain Adam as PyTorch's fused kernel (one pass over each stacked
    tensor instead of a dozen, the same update), anything else as ``make`` builds it. A single model keeps
    ``make``'s, so that one run stays bit-identical to the reference loop."""
    if cfg.optimizer == "adam" and params and all(p.device.type in ("cpu", "cuda") for p in params):
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay,
                                fused=True)
    return make(cfg, params)
