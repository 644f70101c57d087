"""Zhang et al.'s CIFAR-10 models (ICLR 2017, "Understanding deep learning requires rethinking
generalization", appendix A and Table 1): the small Inception, with and without batch norm, and the
small AlexNet.  Their MLPs are ``mlp:512`` and ``mlp:512x512x512`` in ``zoo``.

Parameter counts on 28x28x3 inputs (CIFAR-10 after ``preprocess: zhang``), as in their Table 1:

    inception-small       1,649,402
    inception-small-nobn  1,649,402
    alexnet-small         1,387,786
    mlp:512               1,209,866
    mlp:512x512x512       1,735,178

How the two Inceptions come to the same count: every convolution carries one learned offset per
output channel.  Without batch norm that is the convolution's bias; with it, the convolution has no
bias (batch norm would cancel it) and the offset is batch norm's beta, with no learned scale gamma.
That is TensorFlow-slim's batch_norm by default (center=True, scale=False), which the count of
Table 1 matches exactly (PyTorch's default BatchNorm2d would add a gamma per channel, 1,712 more
parameters).

Batch norm and groups: a sweep may train these models R at a time as one vmapped model (see
rote.training.loop). Batch norm works there: its running mean and variance are buffers, stacked like
the weights to (R, C), and under vmap each member normalises with its own batch's statistics and
updates its own running statistics, as it would alone.
"""

from __future__ import annotations

import torch
from torch import nn

from rote.models.registry import no_arg, register_model


class CenteredBatchNorm(nn.Module):
    """Batch norm with a learned offset (beta) and no learned scale: TF-slim's batch_norm default.

    eps 1e-3 is also slim's; the running statistics use PyTorch's momentum, 0.1 (slim's decay
    0.999 would be momentum 0.001). They matter only in evaluation.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, eps=1e-3, affine=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):  # (B, C, H, W)
        return self.norm(x) + self.bias[:, None, None]


def conv_module(cin: int, cout: int, k: int, stride: int, bn: bool) -> nn.Sequential:
    """Zhang et al.'s Figure 3 'Conv module': conv, batch norm (or the conv's bias), ReLU; 'same' padding."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn)]
    if bn:
        layers.append(CenteredBatchNorm(cout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InceptionModule(nn.Module):
    """A 1x1 conv module of c1 channels beside a 3x3 one of c3, concatenated: c1 + c3 channels out."""

    def __init__(self, cin: int, c1: int, c3: int, bn: bool):
        super().__init__()
        self.branch1 = conv_module(cin, c1, 1, 1, bn)
        self.branch3 = conv_module(cin, c3, 3, 1, bn)

    def forward(self, x):  # (B, cin, H, W) -> (B, c1 + c3, H, W)
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class DownsampleModule(nn.Module):
    """A stride-2 3x3 conv module of c3 channels beside a stride-2 3x3 max pool: cin + c3 channels, half the size.

    Both use 'same'-style padding so that 28 -> 14 -> 7 and the final mean pool is 7x7 as in the paper.
    """

    def __init__(self, cin: int, c3: int, bn: bool):
        super().__init__()
        self.conv = conv_module(cin, c3, 3, 2, bn)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x):  # (B, cin, H, W) -> (B, c3 + cin, ceil(H/2), ceil(W/2))
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


def _inception_small(in_shape, classes: int, dropout: float, bn: bool) -> nn.Sequential:
    c = in_shape[0]
    layers: list[nn.Module] = [conv_module(c, 96, 3, 1, bn)]            # (B, 96, 28, 28)
    width = 96
    stages = [("i", 32, 32), ("i", 32, 48), ("d", 80),                  # (B, 160, 14, 14)
              ("i", 112, 48), ("i", 96, 64), ("i", 80, 80), ("i", 48, 96), ("d", 96),  # (B, 240, 7, 7)
              ("i", 176, 160), ("i", 176, 160)]                         # (B, 336, 7, 7)
    for kind, *ch in stages:
        if kind == "i":
            layers.append(InceptionModule(width, ch[0], ch[1], bn))
            width = ch[0] + ch[1]
        else:
            layers.append(DownsampleModule(width, ch[0], bn))
            width += ch[0]
    # The paper's 7x7 mean pool is the whole 7x7 map of a 28x28 input; global mean pooling is
    # the same there and also takes uncropped 32x32 images (an 8x8 map).
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]                   # (B, 336)
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


@register_model("inception-small", help="Zhang et al.'s small Inception with batch norm (1,649,402 parameters "
                "on 28x28x3); sgd lr 0.1")
def inception_small(arg, *, in_shape, classes, dropout):
    """Zhang et al.'s small Inception (appendix A, Figure 3), batch norm after every convolution."""
    no_arg("inception-small", arg)
    return _inception_small(in_shape, classes, dropout, bn=True)


@register_model("inception-small-nobn", help="the small Inception without batch norm, a bias per conv instead "
                "(1,649,402 parameters on 28x28x3)")
def inception_small_nobn(arg, *, in_shape, classes, dropout):
    """Zhang et al.'s small Inception without batch norm: each convolution has its bias back."""
    no_arg("inception-small-nobn", arg)
    return _inception_small(in_shape, classes, dropout, bn=False)


def _pooled(n: int) -> int:
    return (n - 1) // 2 + 1  # a 3x3 stride-2 max pool with padding 1: 28 -> 14 -> 7


@register_model("alexnet-small", help="Zhang et al.'s small AlexNet: 2x(conv5x5 64, pool, LRN), dense 384, 192 "
                "(1,387,786 parameters on 28x28x3)")
def alexnet_small(arg, *, in_shape, classes, dropout):
    """Zhang et al.'s small AlexNet (appendix A): two blocks of 5x5 conv, 3x3 max pool, local
    response normalisation, then dense layers of 384 and 192 units.

    The paper gives no normalisation constants; these are those of the TensorFlow CIFAR-10 tutorial
    model whose shape this is: tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75), which is
    PyTorch's LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1). The tutorial puts its second
    normalisation before the pool; the paper's order (pool, then normalisation) is kept in both blocks.
    """
    no_arg("alexnet-small", arg)
    c, h, w = in_shape

    def block(cin):
        return [nn.Conv2d(cin, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
                nn.LocalResponseNorm(9, alpha=1e-3, beta=0.75, k=1.0)]

    layers = block(c) + block(64)                                       # (B, 64, 14, 14), then (B, 64, 7, 7)
    layers += [nn.Flatten(),                                            # (B, 3136) for 28x28 inputs
               nn.Linear(64 * _pooled(_pooled(h)) * _pooled(_pooled(w)), 384), nn.ReLU(),
               nn.Linear(384, 192), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(192, classes))
    return nn.Sequential(*layers)
