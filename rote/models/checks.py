"""Checks a model must pass before a run writes or allocates anything.

``check_model`` builds the model on the meta device (shapes, no memory),
estimates what training it needs from its parameter count and refuses it if
that cannot fit, and pushes one batch of the data's real shape through it: on
the meta device for a registered model, for real (on the CPU, small) for a
user's factory, whose output must also be finite.  Every failure is one line.

The memory rule: training keeps, per parameter, the float32 weight, its
gradient and the optimiser's state (Adam: two moments; SGD with momentum:
one).  That is a lower bound (activations, the data and the framework come
on top), so a model refused by it can never have fitted, and one that passes
may still be too big for a small machine, where PyTorch's own out-of-memory
error then says so.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from rote.errors import ConfigError
from rote.models.registry import build, is_factory_path

BYTES_PER_VALUE = 4  # float32
CHECK_BATCH = 2  # images in the trial forward pass (two, so batch norm in a user's model has a batch)


def optimiser_states(optimizer: str, momentum: float = 0.0) -> int:
    """Values the optimiser keeps per parameter: Adam's two moments, SGD's momentum buffer if it has one."""
    if optimizer.startswith("adam"):
        return 2
    return 1 if momentum else 0


def training_bytes(parameters: int, optimizer: str = "adam", momentum: float = 0.0, models: int = 1) -> int:
    """The least memory training ``models`` such models needs: weights, gradients and optimiser state."""
    return models * parameters * BYTES_PER_VALUE * (2 + optimiser_states(optimizer, momentum))


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes free for a run on ``device``, where they are, in words); (None, ...) where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"the GPU ({device}) has"
    try:  # Linux: what can be had without swapping, page cache included
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine has"
    except OSError:
        pass
    try:  # elsewhere (macOS; an Apple GPU shares it): all of it, an upper bound
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine has"
    except (ValueError, OSError, AttributeError):
        return None, ""


def size_words(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def check_fits(name: str, parameters: int, device: torch.device, optimizer: str = "adam", momentum: float = 0.0,
               models: int = 1) -> None:
    """Refuse, in one line, a model whose training cannot fit in the memory ``device`` has free."""
    need = training_bytes(parameters, optimizer, momentum, models)
    free, where = available_memory(device)
    if free is None or need <= free:
        return
    group = f"{models} of them side by side, " if models > 1 else ""
    raise ConfigError(
        f"model '{name}' has {parameters:,} parameters; training {group}with {optimizer} needs at least "
        f"{size_words(need)} ({BYTES_PER_VALUE * (2 + optimiser_states(optimizer, momentum))} bytes a parameter "
        f"for weights, gradients and optimiser state), but {where} {size_words(free)} available; "
        f"choose a smaller model")


def meta_model(name: str, in_shape, classes: int) -> nn.Module:
    """The model built on the meta device: every shape, no memory. ConfigError for a bad name or argument.

    A model with lazy layers (nn.LazyLinear, ...), whose parameters exist only after a forward pass, is
    materialised by one batch of ``in_shape`` on the meta device, so that its parameters can be counted."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # zero-size layers warn here; the forward pass says what is wrong
        model = build(name, in_shape=tuple(in_shape), classes=classes, dropout=0.0)
        if has_lazy_parameters(model):
            try:
                with torch.no_grad():
                    model(torch.zeros(CHECK_BATCH, *in_shape))
            except Exception as e:
                raise ConfigError(f"model '{name}': its lazy layers could not be set up by one batch of shape "
                                  f"{(CHECK_BATCH, *in_shape)} ({_one_line(e)})") from None
        return model


def has_lazy_parameters(model: nn.Module) -> bool:
    """Does the model hold parameters that only a forward pass gives a shape (lazy layers)?"""
    return any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())


def meta_parameters(name: str, in_shape, classes: int) -> int | None:
    """The model's parameter count, from a meta-device build; None for a factory that cannot be built there."""
    try:
        return sum(p.numel() for p in meta_model(name, in_shape, classes).parameters())
    except ConfigError:
        if is_factory_path(name):
            return None
        raise


def dense_step_macs(name: str, in_shape, classes: int, batch: int, members: int = 1) -> int | None:
    """Multiply-adds of one training step's forward pass for a model made only of dense (Linear) layers
    (its weights x batch x members), None for any other (a convolution, a factory that cannot be built on
    the meta device). rote.threads uses it to keep tiny dense models on one thread."""
    try:
        model = meta_model(name, in_shape, classes)
    except ConfigError:
        return None
    weighted = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if not weighted or any(not isinstance(m, nn.Linear) for m in weighted):
        return None
    return sum(m.weight.numel() for m in weighted) * batch * members


def _one_line(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def check_forward(name: str, model: nn.Module, in_shape, classes: int) -> None:
    """One batch of the data's shape through the model: it must give (batch, classes) finite logits."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type == "meta":
        x = torch.empty(CHECK_BATCH, *in_shape, device="meta")
    else:  # the scale of rote's inputs (x/255 - 0.5), from a fixed generator
        x = torch.rand(CHECK_BATCH, *in_shape, generator=torch.Generator().manual_seed(0)) - 0.5
    shape = "x".join(map(str, in_shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as e:  # the model's own code: any error is the model's, told in one line
        raise ConfigError(f"model '{name}' fails on a batch of this data's {shape} images, shape {tuple(x.shape)}: "
                          f"{_one_line(e)}") from None
    finally:
        model.train(was_training)
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"model '{name}' returns a {type(y).__name__}, not a tensor of logits "
                          f"({CHECK_BATCH}, {classes})")
    if tuple(y.shape) != (CHECK_BATCH, classes):
        raise ConfigError(f"model '{name}' maps a batch of shape {tuple(x.shape)} to {tuple(y.shape)}; it must give "
                          f"({CHECK_BATCH}, {classes}): one logit for each of this data's {classes} classes")
    if y.device.type != "meta" and not torch.isfinite(y).all():
        bad = int((~torch.isfinite(y)).sum())
        raise ConfigError(f"model '{name}' gives {bad} non-finite logits (NaN or infinity) of {y.numel()} on a batch "
                          f"of this data's {shape} images; check its forward pass and initialisation")


def check_model(name: str, *, in_shape, classes: int, device: torch.device | None = None, optimizer: str = "adam",
                momentum: float = 0.0, models: int = 1) -> int:
    """Everything that can be known about a model before a run: its name, whether training it fits in
    ``device``'s memory (skipped without a device), and one forward pass on a batch of ``in_shape`` = (C, H, W).
    Returns its parameter count."""
    factory = is_factory_path(name)
    try:
        meta = meta_model(name, in_shape, classes)
    except ConfigError:
        if not factory:
            raise
        meta = None  # some factories cannot be built on the meta device; the real build below says what fails
    if meta is not None and device is not None:
        check_fits(name, sum(p.numel() for p in meta.parameters()), device, optimizer, momentum, models)
    if factory:
        model = build(name, in_shape=tuple(in_shape), classes=classes, dropout=0.0)
        check_forward(name, model, in_shape, classes)  # materialises lazy layers, if any, before the count
        return sum(p.numel() for p in model.parameters())
    check_forward(name, meta, in_shape, classes)
    return sum(p.numel() for p in meta.parameters())
