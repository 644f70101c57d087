"""A registry of models: adding one is one decorated function.

A model name is ``family`` or ``family:arg`` (``seed-cnn``, ``mlp:512x512``,
``cnn:16``, ``inception-small``), or a user's factory as ``package.module:function``,
called as ``function(in_shape=(C, H, W), classes=K)`` and returning a
``torch.nn.Module`` (the current directory is importable, as for ``python -m``).
``registry`` maps names to factories; ``zoo`` holds the seed CNN, the MLPs and the
width-scalable CNN; ``zhang`` holds Zhang et al.'s small Inception and AlexNet. Every model maps images (B, C, H, W)
to logits (B, classes); the caller passes the dataset's (C, H, W) and class count.
"""

from __future__ import annotations

import torch
from torch import nn

from rote.errors import ConfigError
from rote.models.registry import (  # noqa: F401  (the public names of rote.models)
    available_models, build, default_model_name, is_factory_path, load_factory, register_model,
)
from rote.models.checks import (  # noqa: F401,E402
    check_fits, check_model, dense_step_macs, meta_model, meta_parameters,
)

def check_model_name(name: str, *, in_shape=(1, 28, 28), classes: int = 10, shape_known: bool = False) -> None:
    """Raise ConfigError unless ``name`` is a known family with a valid argument.

    Config validation checks the name before any data is loaded, so the shape
    defaults to MNIST's; a model's argument does not depend on the shape.
    Building on the meta device checks it without allocating weights. A
    user's factory is only imported then; once the run has its data
    (``shape_known``) every model also takes one batch of the data's shape
    (``checks.check_model``).
    """
    if shape_known:
        check_model(name, in_shape=in_shape, classes=classes)
    elif is_factory_path(name):
        load_factory(name)  # importable and callable; it is called once the data's shape is known
    else:
        meta_model(name, in_shape, classes)


def create_model(name: str, *, in_shape: tuple[int, int, int], classes: int, dropout: float = 0.0,
                 init: str = "keras", generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised model for images ``in_shape`` = (C, H, W) and ``classes`` classes."""
    model = build(name, in_shape=in_shape, classes=classes, dropout=dropout)
    materialise(model, in_shape)
    initialise(model, init, generator)
    return model


def materialise(model: nn.Module, in_shape) -> None:
    """Give lazy layers (nn.LazyLinear, ...) their parameters: one batch of zeros through the model in eval
    mode (no dropout drawn from the global generator, no batch-norm statistics changed). Others: nothing."""
    from rote.models.checks import has_lazy_parameters

    if not has_lazy_parameters(model):
        return
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *in_shape, device=next(iter(model.buffers()), torch.zeros(0)).device))
    model.train(was)


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


from rote.models import zoo, zhang  # noqa: E402,F401  (importing them registers the models)
