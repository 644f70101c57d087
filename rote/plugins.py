"""A user's own code named as ``package.module:function`` (a model factory, an optimizer): imported once, checked,
every failure one line. The current directory is importable, as it is for ``python -m``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

from rote.errors import ConfigError


def import_callable(name: str, what: str, builtin: str, signature: str) -> Callable:
    """The callable ``package.module:function`` names; ConfigError (one line) if the module cannot be imported,
    has no such attribute, or it is not callable.

    what: 'model' or 'optimizer'; builtin: the names rote itself knows, for the message; signature: how the
    callable is called, e.g. '(in_shape, classes) -> torch.nn.Module'."""
    module_name, _, attr = name.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the `rote` script, unlike `python -m`, does not add it
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"unknown {what} '{name}': not one of rote's ({builtin}) and module '{e.name}' cannot be "
                          f"imported (is it on PYTHONPATH or in the current directory?)") from None
    except Exception as e:  # the user's module failed while importing
        raise ConfigError(f"{what} '{name}': importing {module_name} raised {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} '{name}': module {module_name} has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} '{name}': {attr} is a {type(obj).__name__}, not a callable factory "
                          f"(def {attr.split('.')[-1]}{signature})")
    return obj
