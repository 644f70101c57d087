"""The models: the seed CNN, MLPs and a width-scalable CNN."""

from __future__ import annotations

from torch import nn

from rote.errors import ConfigError
from rote.models.registry import no_arg, register_model


@register_model("seed-cnn", help="the seed's Keras CNN: 2x(conv32) pool 2x(conv64) pool dense512")
def seed_cnn(arg, *, in_shape, classes, dropout):
    """The seed's CNN (mnist_conv.py, Keras 1): 889,834 parameters on MNIST."""
    no_arg("seed-cnn", arg)
    c, h, w = in_shape
    # 'same' then 'valid' 3x3 convs, then 2x2 pools: 28 -> 28 -> 26 -> 13 -> 13 -> 11 -> 5
    h2, w2 = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
    layers = [
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),   # (B, 32, 28, 28)
        nn.Conv2d(32, 32, 3), nn.ReLU(),             # (B, 32, 26, 26)
        nn.MaxPool2d(2),                             # (B, 32, 13, 13)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),  # (B, 64, 13, 13)
        nn.Conv2d(64, 64, 3), nn.ReLU(),             # (B, 64, 11, 11)
        nn.MaxPool2d(2),                             # (B, 64, 5, 5)
        nn.Flatten(),                                # (B, 1600), channel-major as Keras 'th'
        nn.Linear(64 * h2 * w2, 512), nn.ReLU(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(512, classes))
    return nn.Sequential(*layers)


@register_model("mlp", default="512",
                help="multilayer perceptron, mlp:512 or mlp:512x512x512 (Zhang et al.'s MLP 1x512, 3x512)")
def mlp(arg, *, in_shape, classes, dropout):
    """Multilayer perceptron with ReLU; 'mlp:512x512' gives two hidden layers of 512."""
    try:
        sizes = [int(s) for s in (arg or "512").split("x")]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"model 'mlp:{arg}': hidden sizes must look like 512 or 512x512x512") from None
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_shape[0] * in_shape[1] * in_shape[2]
    for s in sizes:
        layers += [nn.Linear(width, s), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = s
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


@register_model("cnn", default="16", help="width-scalable CNN, cnn:K with channel widths K,2K,4K,8K")
def cnn(arg, *, in_shape, classes, dropout):
    """Four 3x3 conv-ReLU blocks of widths K, 2K, 4K, 8K (pooling after the last three), global max-pool, linear.

    The shape follows the width-scaled CNNs of the double-descent literature
    (Nakkiran et al., 2019), without batch norm so that it stays a plain,
    deterministic function of its weights.
    """
    try:
        k = int(arg or 16)
        if k < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"model 'cnn:{arg}': K must be a positive integer, e.g. cnn:16") from None
    c = in_shape[0]
    layers: list[nn.Module] = [nn.Conv2d(c, k, 3, padding=1), nn.ReLU()]                    # (B, K, 28, 28)
    layers += [nn.Conv2d(k, 2 * k, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]              # (B, 2K, 14, 14)
    layers += [nn.Conv2d(2 * k, 4 * k, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]          # (B, 4K, 7, 7)
    layers += [nn.Conv2d(4 * k, 8 * k, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]          # (B, 8K, 3, 3)
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]                                      # (B, 8K)
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(8 * k, classes))
    return nn.Sequential(*layers)
