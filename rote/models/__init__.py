"""A registry of models: adding one is one decorated function.

A model name is ``family`` or ``family:arg`` (``seed-cnn``, ``mlp:512x512``,
``cnn:16``, ``inception-small``). ``zoo`` holds the seed CNN, the MLPs and
the width-scalable CNN; ``zhang`` holds Zhang et al.'s small Inception and
AlexNet. Every model maps images (B, C, H, W) to logits (B, classes); the
caller passes the dataset's (C, H, W) and class count.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from rote.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_HELP: dict[str, str] = {}


def register_model(name: str, help: str = ""):
    def deco(fn):
        _REGISTRY[name] = fn
        _HELP[name] = help or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return deco


def available_models() -> dict[str, str]:
    return dict(_HELP)


def _build(name: str, **kw) -> nn.Module:
    family, _, arg = name.partition(":")
    if family not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[family](arg or None, **kw)


def check_model_name(name: str, *, in_shape=(1, 28, 28), classes: int = 10) -> None:
    """Raise ConfigError unless ``name`` is a known family with a valid argument.

    Config validation checks the name before any data is loaded, so the shape
    defaults to MNIST's; a model's argument does not depend on the shape.
    Building on the meta device checks it without allocating weights.
    """
    with torch.device("meta"):
        _build(name, in_shape=in_shape, classes=classes, dropout=0.0)


def create_model(name: str, *, in_shape: tuple[int, int, int], classes: int, dropout: float = 0.0,
                 init: str = "keras", generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised model for images ``in_shape`` = (C, H, W) and ``classes`` classes."""
    model = _build(name, in_shape=in_shape, classes=classes, dropout=dropout)
    initialise(model, init, generator)
    return model


def initialise(model: nn.Module, init: str, generator: torch.Generator | None = None) -> None:
    """'keras': Glorot-uniform kernels and zero biases, Keras 1's defaults.

    'torch' keeps PyTorch's own layer initialisation (Kaiming-uniform with
    a=sqrt(5), biases uniform in +-1/sqrt(fan_in)), re-drawn from ``generator``
    so it is reproducible without touching global RNG state.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "keras":
                # same fans as Keras: fan_in = in_ch*kh*kw, fan_out = out_ch*kh*kw
                nn.init.xavier_uniform_(m.weight, generator=generator)
                if m.bias is not None:  # a conv followed by batch norm has none
                    nn.init.zeros_(m.bias)
            elif init == "torch":
                nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5, generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1 / fan_in ** 0.5
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            else:
                raise ConfigError(f"unknown init '{init}'; choose keras or torch")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from rote.models import zoo, zhang  # noqa: E402,F401  (registers the models)
