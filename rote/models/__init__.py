"""A registry of models: adding one is one decorated function.

A model name is ``family`` or ``family:arg`` (``seed-cnn``, ``mlp:512x512``,
``cnn:16``, ``inception-small``), or a user's factory as ``package.module:function``,
called as ``function(in_shape=(C, H, W), classes=K)`` and returning a
``torch.nn.Module`` (the current directory is importable, as for ``python -m``).
``zoo`` holds the seed CNN, the MLPs and the width-scalable CNN; ``zhang`` holds
Zhang et al.'s small Inception and AlexNet. Every model maps images (B, C, H, W)
to logits (B, classes); the caller passes the dataset's (C, H, W) and class count.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Callable

import torch
from torch import nn

from rote.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_HELP: dict[str, str] = {}
_DEFAULT_ARG: dict[str, str] = {}


def register_model(name: str, help: str = "", default: str = ""):
    """``default``: the argument a bare family name means (``mlp`` is ``mlp:512``)."""
    def deco(fn):
        _REGISTRY[name] = fn
        _HELP[name] = help or (fn.__doc__ or "").strip().splitlines()[0]
        _DEFAULT_ARG[name] = default
        return fn

    return deco


def available_models() -> dict[str, str]:
    return dict(_HELP)


def default_model_name(family: str) -> str:
    """The full name a bare family stands for: 'mlp' -> 'mlp:512'."""
    return f"{family}:{_DEFAULT_ARG[family]}" if _DEFAULT_ARG.get(family) else family


_FACTORY = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_factory_path(name: str) -> bool:
    """True for a user's ``package.module:function`` rather than a registered family."""
    return name.partition(":")[0] not in _REGISTRY and bool(_FACTORY.fullmatch(name))


def load_factory(name: str) -> Callable[..., nn.Module]:
    """Import ``package.module:function``; ConfigError (one line) if it is not there or not callable."""
    module_name, _, attr = name.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the `rote` script, unlike `python -m`, does not add it
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        known = ", ".join(_REGISTRY)
        raise ConfigError(f"unknown model '{name}': not a registered model ({known}) and module '{e.name}' "
                          f"cannot be imported (is it on PYTHONPATH or in the current directory?)") from None
    except Exception as e:  # the user's module failed while importing
        raise ConfigError(f"model '{name}': importing {module_name} raised {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"model '{name}': module {module_name} has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"model '{name}': {attr} is a {type(obj).__name__}, not a callable factory "
                          f"(def {attr.split('.')[-1]}(in_shape, classes) -> torch.nn.Module)")
    return obj


def _build_factory(name: str, *, in_shape, classes, dropout) -> nn.Module:
    factory = load_factory(name)
    try:
        model = factory(in_shape=tuple(in_shape), classes=classes)
    except Exception as e:
        raise ConfigError(f"model '{name}': {name.partition(':')[2]}(in_shape={tuple(in_shape)}, classes={classes}) "
                          f"raised {type(e).__name__}: {' '.join(str(e).split())}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model '{name}': the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _build(name: str, **kw) -> nn.Module:
    family, _, arg = name.partition(":")
    if family not in _REGISTRY:
        if _FACTORY.fullmatch(name):
            return _build_factory(name, **kw)
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(_REGISTRY)}, "
                          f"or a factory as package.module:function")
    return _REGISTRY[family](arg or None, **kw)


def check_model_name(name: str, *, in_shape=(1, 28, 28), classes: int = 10, shape_known: bool = False) -> None:
    """Raise ConfigError unless ``name`` is a known family with a valid argument.

    Config validation checks the name before any data is loaded, so the shape
    defaults to MNIST's; a model's argument does not depend on the shape.
    Building on the meta device checks it without allocating weights. A
    user's factory is only imported then, and called (``shape_known``) once
    the run has its data.
    """
    if is_factory_path(name) and not shape_known:
        load_factory(name)  # importable and callable; it is called once the data's shape is known
        return
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
                    bound = 1 / m.weight[0].numel() ** 0.5  # 1/sqrt(fan_in)
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            else:
                raise ConfigError(f"unknown init '{init}'; choose keras or torch")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from rote.models import zoo, zhang  # noqa: E402,F401  (registers the models)
