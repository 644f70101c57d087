"""Settings for one run, as one frozen dataclass.

The defaults are the seed experiment: 3,000 MNIST training images with their
labels permuted, the seed CNN with Keras-1 initialisation, Adam at Keras's
defaults, batch 32, the last 10% held out for validation, up to 1,000 epochs.

Overrides are strict (an unknown key is an error, a value must parse to the
field's type), so a typo can never silently fall back to a default. The CLI,
sweep files and tests all build configs through ``RunConfig.from_dict``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np

from rote.errors import ConfigError, RoteError
from rote.seeds import seeds_for  # noqa: F401  (kept here: rote.config.seeds_for is public)

LABEL_CORRUPTIONS = ("permute", "random", "partial:P", "flip:P", "true")
INPUT_CORRUPTIONS = ("none", "shuffled-pixels", "random-pixels", "gaussian")
# "zhang": Zhang et al.'s centre crop to 28x28 and per-image whitening (see rote.data.prepare)
PREPROCESSES = ("none", "zhang")
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("keras", "torch")
OPTIMIZERS = ("adam", "adam-keras1", "adamw", "sgd")  # or a user's package.module:function (rote.training.optim)
LOSSES = ("ce", "keras1")
SCHEDULES = ("constant", "step", "cosine")
# The seed's 99.7%: a run has memorised its training part when a full pass in
# eval mode fits at least this share (or --stop-at, when one is set).
MEMORIZED_AT = 0.997


# lr and weight_decay become float32 values in the optimiser's tensor arithmetic, so they must fit in one;
# Adam's first step divides lr by 1 - beta1 = 0.1, hence the tenth
FLOAT32_MAX = float(np.finfo(np.float32).max)
LARGEST_LR = FLOAT32_MAX / 10

# Settings added after stores of results existed, with the value that means "as before".
KEY_NEUTRAL = {"preprocess": "none", "subset": None, "label_seed": None, "model_source": None,
               "data_source": None, "optimizer_source": None, "warmup_epochs": 0}


def fit_threshold(stop_at: Optional[float]) -> float:
    """The accuracy on the full training part that counts as memorised: the one definition."""
    return MEMORIZED_AT if stop_at is None else stop_at


def reached(acc: float, stop_at: Optional[float]) -> bool:
    """Has a full pass over the training part fitted it: an accuracy at or above the threshold."""
    return acc >= fit_threshold(stop_at)


@dataclass(frozen=True)
class RunConfig:
    # what is learned
    dataset: str = "mnist"
    n_train: int = 3000  # the first N training images (train + validation part)
    labels: str = "permute"  # see LABEL_CORRUPTIONS
    label_seed: Optional[int] = None  # draw the labels from this seed instead of `seed` (fixed labels across seeds)
    inputs: str = "none"  # see INPUT_CORRUPTIONS
    preprocess: str = "none"  # see PREPROCESSES; applied to training and test images alike
    # train on a random subset of the training part, round(subset * n_fit) images drawn from `seed`;
    # the final model is then asked about every image of the part (membership.npz, Feldman & Zhang 2020)
    subset: Optional[float] = None
    # by what
    model: str = "seed-cnn"
    init: str = "keras"  # Glorot-uniform kernels, zero biases (Keras 1 defaults)
    dropout: float = 0.0
    # how
    optimizer: str = "adam"  # adam-keras1: Adam exactly as Keras 1.2 updates (eps outside the bias correction)
    loss: str = "ce"  # keras1: Keras 1.2's cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "constant"  # "step": lr x step_gamma every step_every epochs
    step_every: int = 1
    step_gamma: float = 0.95  # Zhang et al.: decay factor 0.95 per epoch
    # the first K epochs' lr rises linearly to lr (lr x epoch / K), before any schedule; "cosine" then decays it
    # to 0 over the rest of the epoch budget
    warmup_epochs: int = 0
    augment_shift: int = 0  # random shifts of up to this many pixels
    batch_size: int = 32
    epochs: int = 1000
    val_split: float = 0.1  # Keras validation_split: the LAST fraction, before shuffling
    # when to stop
    stop_at: Optional[float] = MEMORIZED_AT  # full-train-set accuracy that counts as memorised
    eval_every: int = 0  # also evaluate the full training part every K epochs (0: only when triggered)
    collapse_patience: int = 2  # consecutive dead-network checks that find it dead before a run is collapsed
    record_examples: bool = True  # keep examples.npz: every training example at every presentation
    # where and how
    seed: int = 0
    device: str = "auto"
    # memory layout of images and convolutions: none (auto) is channels-last for one model on a CPU,
    # where it is faster, and contiguous otherwise; it changes the last bits of a convolution, not the study
    channels_last: Optional[bool] = None
    # what a user's own code and data were, set by rote (``identify``), never by hand: the SHA-256 (16 hex) of
    # the source of a factory model's module (model: package.module:function) and of an npz dataset's file.
    # They are settings in all but name: an edited model or data file makes new runs, never reuses old ones.
    model_source: Optional[str] = None
    data_source: Optional[str] = None
    optimizer_source: Optional[str] = None  # likewise for optimizer: package.module:function

    # -- construction -------------------------------------------------------

    @classmethod
    def from_dict(cls, overrides: dict[str, Any], base: "RunConfig | None" = None) -> "RunConfig":
        """Apply overrides strictly: unknown keys and unparsable values are errors."""
        base = base or cls()
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, raw in overrides.items():
            name = key.replace("-", "_")
            if name not in known:
                hint = _closest(name, known) if len(name) < 100 else None
                raise ConfigError(f"unknown setting {_quote(key)}" + (f" (did you mean '{hint}'?)" if hint else "")
                                  + f"; known settings: {', '.join(known)}")
            values[name] = parse_value(known[name], raw, key)
        cfg = dataclasses.replace(base, **values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check ranges and names; raise ConfigError with a one-line fix."""
        from rote.data.corruption import parse_label_corruption, parse_input_corruption
        from rote.models import check_model_name, is_factory_path

        if self.n_train < 1:
            raise ConfigError(f"n_train must be positive, got {self.n_train}")
        if not (0.0 <= self.val_split < 1.0):
            raise ConfigError(f"val_split must be in [0, 1), got {self.val_split}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a finite positive number, got {self.lr}")
        if self.lr > LARGEST_LR:
            raise ConfigError(f"lr must be a finite positive number of at most {LARGEST_LR:.3g} (training computes "
                              f"in float32), got {self.lr:g}")
        if not (0 <= self.weight_decay < math.inf):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.weight_decay > FLOAT32_MAX:
            raise ConfigError(f"weight_decay must be a finite number >= 0 of at most {FLOAT32_MAX:.3g} (training "
                              f"computes in float32), got {self.weight_decay:g}")
        if not (0.0 <= self.momentum < 1.0):
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.label_seed is not None and self.label_seed < 0:
            raise ConfigError(f"label_seed must be >= 0 or none, got {self.label_seed}")
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.stop_at is not None and not (0.0 < self.stop_at <= 1.0):
            raise ConfigError(f"stop_at must be in (0, 1] or none, got {self.stop_at}")
        if self.eval_every < 0 or self.collapse_patience < 0 or self.augment_shift < 0:
            raise ConfigError("eval_every, collapse_patience and augment_shift must be >= 0")
        if self.step_every < 1 or not (0 < self.step_gamma <= 1):
            raise ConfigError("step_every must be >= 1 and step_gamma in (0, 1]")
        _choice("init", self.init, INITS)
        if not is_optimizer_factory(self.optimizer):
            _choice("optimizer", self.optimizer, OPTIMIZERS)
        else:
            from rote.training.optim import load_optimizer_factory

            load_optimizer_factory(self.optimizer)
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        _choice("loss", self.loss, LOSSES)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("preprocess", self.preprocess, PREPROCESSES)
        _check_dataset(self.dataset)
        parse_label_corruption(self.labels)
        parse_input_corruption(self.inputs)
        check_model_name(self.model)
        if self.dropout > 0 and is_factory_path(self.model):
            # rote's own models take dropout as an argument; a user's factory builds its layers itself, so a
            # dropout setting would be recorded as applied while nothing applied it
            raise ConfigError(f"dropout={self.dropout:g} cannot apply to '{self.model}': a factory builds its own "
                              f"layers; put nn.Dropout in the model itself and leave dropout at 0")
        n_val = self.n_val
        if self.n_train - n_val < 1:
            raise ConfigError(f"n_train={self.n_train} with val_split={self.val_split} leaves no training images")
        if self.subset is not None:
            n_fit = self.n_train - n_val
            if not (0.0 < self.subset < 1.0):
                raise ConfigError(f"subset must be in (0, 1) or none, got {self.subset}")
            if not (1 <= self.n_subset < n_fit):
                raise ConfigError(f"subset={self.subset} of {n_fit} training images keeps {self.n_subset}; "
                                  f"it must keep at least one and hold at least one out")

    # -- derived ------------------------------------------------------------

    @property
    def n_val(self) -> int:
        # Keras: split_at = int(len(x) * (1 - validation_split)); validation is x[split_at:]
        return self.n_train - int(self.n_train * (1.0 - self.val_split))

    @property
    def n_subset(self) -> Optional[int]:
        """How many images of the training part a run on a subset trains on; None without one."""
        return None if self.subset is None else round(self.subset * (self.n_train - self.n_val))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A stable hash of every setting: two runs share a key only if they share all settings.

        A setting added after stores of results existed is left out while it
        has that value (see KEY_NEUTRAL), so those stores keep their keys and
        are not run again; any other value of it makes a different key.
        """
        settings = {k: v for k, v in self.to_dict().items() if not (k in KEY_NEUTRAL and v == KEY_NEUTRAL[k])}
        blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The settings as aligned 'name = value' lines, printed before a run starts."""
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {f.name:<{width}} = {getattr(self, f.name)!r}" for f in fields(self))


def resolve_device(name: str):
    """The torch.device a run uses: 'auto' is cuda, then mps, then cpu."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but this machine has no Apple GPU; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device '{name}'; choose auto, cpu, cuda or mps")
    return torch.device(name)


def _check_dataset(name: str) -> None:
    from rote.data.registry import get_spec
    from rote.data.npz import check_npz_name, is_npz_name

    try:
        check_npz_name(name) if is_npz_name(name) else get_spec(name)
    except RoteError as e:
        raise ConfigError(str(e)) from None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {_quote(value)}; choose one of: {', '.join(allowed)}")


def _closest(name: str, known: dict) -> Optional[str]:
    import difflib

    match = difflib.get_close_matches(name, list(known), n=1)
    return match[0] if match else None


_NONE_WORDS = {"none", "null", "off"}
_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0"}


def parse_value(f: dataclasses.Field, raw: Any, key: str) -> Any:
    """Parse raw (a string from the command line, or a YAML/TOML value) to the field's type."""
    hint = typing.get_type_hints(RunConfig)[f.name]
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    # an optional switch reads 'auto' as none, and 'off' as false
    none_words = {"none", "null", "auto"} if hint is bool else _NONE_WORDS
    if raw is None or (optional and isinstance(raw, str) and raw.strip().lower() in none_words):
        if optional:
            return None
        raise ConfigError(f"setting '{key}' cannot be none")
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
            raise ValueError
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            if isinstance(raw, str):
                raw = raw.strip().replace("_", "")
                if not re.fullmatch(r"[+-]?\d+", raw):
                    raise ValueError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if math.isnan(value):
                raise ValueError
            return value
        if hint is str:
            if isinstance(raw, bool):  # YAML reads `labels: true` as a boolean
                return "true" if raw else "false"
            if not isinstance(raw, (str, int, float)):
                raise ValueError
            return str(raw).strip()
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"unhandled field type {hint} for {f.name}")
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]
    raise ConfigError(f"setting '{key}' must be {expected}" + (" or none" if optional else "") + f", got {_quote(raw)}")


def _quote(value: Any, limit: int = 60) -> str:
    """repr(value) cut to ``limit`` characters: a value quoted in an error keeps the line short."""
    text = repr(value) if len(str(value)) < 10 * limit else repr(str(value)[:limit])
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- the identity of a user's own model and data --------------------------------------------------------------

# settings that follow from others (the code or bytes behind model, dataset, optimizer): they tell versions
# apart, never name a condition
IDENTITY_FIELDS = ("model_source", "data_source", "optimizer_source")

_DIGESTS: dict = {}  # (path, size, mtime_ns) -> digest: a file is hashed once per process


def file_digest(path) -> str:
    """The SHA-256 of a file's bytes, 16 hex digits (as keys are)."""
    import os

    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def module_source_digest(name: str) -> Optional[str]:
    """The digest of the source file of the module a ``package.module:function`` names; None for a module
    without one (built-in, compiled)."""
    import importlib
    import inspect

    module = importlib.import_module(name.partition(":")[0])
    try:
        path = inspect.getsourcefile(module)
    except TypeError:  # a built-in or compiled module
        path = None
    return file_digest(path) if path else None


def model_source_digest(model: str) -> Optional[str]:
    """The digest of the module that defines a factory model; None for rote's own models."""
    from rote.models import is_factory_path, load_factory

    if not is_factory_path(model):
        return None
    load_factory(model)  # importable and callable, or one line saying why not
    return module_source_digest(model)


def data_source_digest(dataset: str) -> Optional[str]:
    """The digest of a user's npz file (dataset npz:PATH); None for the named datasets, which rote verifies."""
    from rote.data.npz import is_npz_name, npz_path

    if not is_npz_name(dataset):
        return None
    path = npz_path(dataset)
    try:
        return file_digest(path)
    except OSError as e:
        raise ConfigError(f"dataset '{dataset}': cannot read {path}: {e.strerror or e}") from None


def is_optimizer_factory(name: str) -> bool:
    """A user's ``package.module:function`` rather than one of OPTIMIZERS."""
    from rote.models.registry import _FACTORY

    return name not in OPTIMIZERS and bool(_FACTORY.fullmatch(name))


def optimizer_source_digest(optimizer: str) -> Optional[str]:
    """The digest of the module that defines a user's optimizer factory; None for rote's own optimizers."""
    return module_source_digest(optimizer) if is_optimizer_factory(optimizer) else None


def identify(cfg: RunConfig) -> RunConfig:
    """The config with the identity of its user's model and optimizer source and npz data filled in (what a
    run records)."""
    return dataclasses.replace(cfg, model_source=model_source_digest(cfg.model),
                               data_source=data_source_digest(cfg.dataset),
                               optimizer_source=optimizer_source_digest(cfg.optimizer))


def check_identity(cfg: RunConfig) -> None:
    """Refuse, in one line, to train a config whose user's model or data changed since it was made (a resume,
    a sweep planned before the edit)."""
    for what, recorded, now, fix in (
            ("model", cfg.model_source, lambda: model_source_digest(cfg.model), "its module's source"),
            ("dataset", cfg.data_source, lambda: data_source_digest(cfg.dataset), "its file"),
            ("optimizer", cfg.optimizer_source, lambda: optimizer_source_digest(cfg.optimizer), "its module's source")):
        if recorded is None:
            continue
        current = now()
        if current != recorded:
            name = {"model": cfg.model, "dataset": cfg.dataset, "optimizer": cfg.optimizer}[what]
            raise ConfigError(f"{what} '{name}' changed since these settings were made ({fix} was {recorded}, "
                              f"is now {current}); results of one version are never continued with another: "
                              f"start a new run (or sweep into another --out)")
