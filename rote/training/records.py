"""What training produces: one record per epoch, one result per run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np


@dataclass
class EpochRecord:
    epoch: int
    seconds: float  # training steps only, device synchronised (for a group: the group's epoch)
    loss: float  # running mean over the epoch's batches, as Keras prints it
    acc: float
    val_loss: float
    val_acc: float
    train_loss_full: Optional[float] = None  # whole training part, eval mode, after the epoch
    train_acc_full: Optional[float] = None
    clean_acc: Optional[float] = None  # ... on the examples whose label was not changed
    corrupt_acc: Optional[float] = None  # ... on those whose label was changed
    pred_max_share: float = 0.0  # share of the epoch's predictions that went to the commonest class
    lr: float = 0.0
    eval_seconds: float = 0.0
    # the dead-network check, on the epochs it ran (those that look like a plateau)
    dead_share: Optional[float] = None  # the largest share of ReLU units dead on every training image, by layer
    dead_layer: Optional[str] = None  # ... and that layer
    logit_spread: Optional[float] = None  # the largest (max - min) of a logit over the training images

    FIELDS = ("epoch", "seconds", "loss", "acc", "val_loss", "val_acc", "train_loss_full", "train_acc_full",
              "clean_acc", "corrupt_acc", "pred_max_share", "lr", "eval_seconds", "dead_share", "dead_layer",
              "logit_spread")


@dataclass
class TrainResult:
    outcome: str  # memorized | collapsed | budget-spent | diverged
    epochs: int
    history: list[EpochRecord]
    memorized_epoch: Optional[int]
    seconds_to_memorize: Optional[float]
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    test_pred: np.ndarray
    train_seconds: float
    seconds_per_epoch: float
    images_per_second: float
    parameters: int
    message: str = ""
    examples: Optional[dict] = None  # the per-example record (see rote.analysis.examples), when kept
    # a run on a subset: the final model's predictions (eval mode) on its fit rows and on the rows of the
    # training part it left out (Prepared.x_out), for Feldman & Zhang's memorisation scores
    fit_pred: Optional[np.ndarray] = None  # (n_fit,)
    out_pred: Optional[np.ndarray] = None  # (n_out,)
    # -ln p(given label | image) of every training example at the end, eval mode: the memorised bits' input
    fit_loss: Optional[np.ndarray] = None  # (n_fit,)
    weights: Optional[dict] = None  # the final state_dict, when asked for (train_many's keep_weights)

    def to_state(self) -> dict:
        """Plain values only (numbers, strings, lists, arrays), for a checkpoint."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "history"},
                "history": [asdict(r) for r in self.history]}

    @classmethod
    def from_state(cls, state: dict) -> "TrainResult":
        return cls(**{**state, "history": [EpochRecord(**r) for r in state["history"]]})


def steady_seconds(history: list[EpochRecord]) -> float:
    """Median seconds per epoch, leaving out the first (one-off warm-up costs) when there are others."""
    return float(np.median([r.seconds for r in history[1:]] or [r.seconds for r in history]))


def images_per_second(n_fit: int, seconds_per_epoch: float) -> float:
    return n_fit / seconds_per_epoch if seconds_per_epoch > 0 else math.nan
