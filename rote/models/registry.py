"""The model registry: names to factories, and users' ``package.module:function`` factories.

Its own module (as timm's ``_registry.py``) so that the model files register
into it without importing the package that imports them.  ``build`` turns a
name into an uninitialised module; ``rote.models`` adds initialisation and checks.
"""

from __future__ import annotations

import re
from typing import Callable

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
    from rote.plugins import import_callable

    return import_callable(name, "model", ", ".join(_REGISTRY), "(in_shape, classes) -> torch.nn.Module")


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


def build(name: str, **kw) -> nn.Module:
    family, sep, arg = name.partition(":")
    if family not in _REGISTRY:
        if _FACTORY.fullmatch(name):
            return _build_factory(name, **kw)
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(_REGISTRY)}, "
                          f"or a factory as package.module:function")
    if sep and not arg:
        # 'mlp:' silently meaning mlp:512 would train one model under another's name (and key)
        plain = default_model_name(family)
        raise ConfigError(f"model '{name}' has nothing after ':'; write {plain}"
                          + (f" (or plain {family}, which means {plain})" if plain != family else ""))
    return _REGISTRY[family](arg or None, **kw)


def no_arg(name, arg):
    """For a family that takes no argument: 'seed-cnn:3' is an error, not seed-cnn."""
    if arg is not None:
        raise ConfigError(f"model '{name}' takes no argument, got '{name}:{arg}'")
