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
OPTIMIZERS = ("adam", "adam-keras1", "sgd")
LOSSES = ("ce", "keras1")
SCHEDULES = ("constant", "step")
# The seed's 99.7%: a run has memorised its training part when a full pass in
# eval mode fits at least this share (or --stop-at, when one is set).
MEMORIZED_AT = 0.997


# lr and weight_decay become float32 values in the optimiser's tensor arithmetic, so they must fit in one;
# Adam's first step divides lr by 1 - beta1 = 0.1, hence the tenth
FLOAT32_MAX = float(np.finfo(np.float32).max)
LARGEST_LR = FLOAT32_MAX / 10

# Settings added after stores of results existed, with the value that means "as before".
KEY_NEUTRAL = {"preprocess": "none", "subset": None, "label_seed": None}


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
        from rote.models import check_model_name

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
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("loss", self.loss, LOSSES)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("preprocess", self.preprocess, PREPROCESSES)
        _check_dataset(self.dataset)
        parse_label_corruption(self.labels)
        parse_input_corruption(self.inputs)
        check_model_name(self.model)
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
