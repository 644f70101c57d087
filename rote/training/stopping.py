"""When a run stops: diverged, memorised, collapsed (provably stuck), or out of epochs."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from rote.config import RunConfig, fit_threshold
from rote.training.records import EpochRecord, TrainResult, images_per_second

# A run counts as stuck in an epoch where at least this share of its training
# predictions went to one class: the network has collapsed to a constant.
COLLAPSE_SHARE = 0.99
# ... or an epoch whose mean loss is within this many nats of the label entropy.
COLLAPSE_LOSS_TOL = 0.005
# Logits that vary by less than this over the whole training part do not depend on the input.
LOGIT_SPREAD_TOL = 1e-5
# Any loss above this is divergence even while finite (a cross-entropy of 10^4 nats is no learning).
DIVERGED_LOSS = 1e4


class Stopper:
    """One run's stop rule: diverged, memorised, or collapsed, that is, provably stuck.

    A plateau (at least COLLAPSE_SHARE of the epoch's predictions in one class,
    or a loss within COLLAPSE_LOSS_TOL of the entropy of the label marginal,
    the loss of a model that ignores its input) is cheap to see but not
    final: runs leave it after many epochs. It only decides when to run the
    dead-network check (``Members.diagnose``). A run is collapsed when that check
    finds it dead on ``collapse_patience`` consecutive checks: a ReLU layer
    with no unit active on any training image, or logits that do not depend
    on the input. A plateau that is not dead is a stall: the run goes on.
    """

    # what a checkpoint keeps: everything the rule has seen so far
    STATE = ("dead", "dead_since", "stalled_since", "outcome", "message", "memorized_epoch", "seconds_to_memorize")

    def __init__(self, cfg: RunConfig, entropy: Optional[float] = None):
        self.cfg = cfg
        self.entropy = entropy
        self.dead = 0  # consecutive checks that found the network dead
        self.dead_since: Optional[int] = None
        self.stalled_since: Optional[int] = None  # first epoch of the current plateau
        self.outcome, self.message = "budget-spent", ""
        self.memorized_epoch: Optional[int] = None
        self.seconds_to_memorize: Optional[float] = None

    def state(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state(self, state: dict) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])

    def plateau(self, rec: EpochRecord) -> bool:
        """Does this epoch look like a constant predictor? (Then run the dead-network check.)"""
        constant = self.entropy is not None and abs(rec.loss - self.entropy) < COLLAPSE_LOSS_TOL
        return self.cfg.collapse_patience > 0 and (rec.pred_max_share >= COLLAPSE_SHARE or constant)

    def update(self, rec: EpochRecord, elapsed: float) -> bool:
        """Record what this epoch decided; True when the run stops here."""
        c = self.cfg
        if not math.isfinite(rec.loss) or rec.loss > DIVERGED_LOSS:
            self.outcome = "diverged"
            self.message = f"the training loss became {rec.loss:.4g} in epoch {rec.epoch}; try a smaller --lr"
            return True
        if c.stop_at is not None and rec.train_acc_full is not None and rec.train_acc_full >= c.stop_at:
            self.outcome, self.memorized_epoch, self.seconds_to_memorize = "memorized", rec.epoch, elapsed
            return True
        on_plateau = self.plateau(rec)
        self.stalled_since = (self.stalled_since or rec.epoch) if on_plateau else None
        dead = on_plateau and rec.dead_share is not None and (
            rec.dead_share >= 1.0 or (rec.logit_spread is not None and rec.logit_spread < LOGIT_SPREAD_TOL))
        self.dead = self.dead + 1 if dead else 0
        self.dead_since = (self.dead_since or rec.epoch) if dead else None
        if dead and self.dead >= c.collapse_patience:
            self.outcome = "collapsed"
            why = (f"{rec.dead_layer} on every training image" if rec.dead_share >= 1.0 else
                   f"its logits do not depend on the input (largest spread {rec.logit_spread:.1e})")
            self.message = f"collapsed: {why} since epoch {self.dead_since}; try another --seed"
            return True
        if rec.epoch >= c.epochs and self.stalled_since is not None:
            self.message = (f"stalled: on a constant predictor's plateau since epoch {self.stalled_since}, "
                            f"but not dead; more epochs may free it")
        return rec.epoch >= c.epochs

    def result(self, history: list[EpochRecord], *, train: tuple[float, float], test: tuple[float, float, np.ndarray],
               train_seconds: float, seconds_per_epoch: float, n_fit: int, parameters: int) -> TrainResult:
        outcome = self.outcome
        if outcome == "budget-spent" and self.cfg.stop_at is None and train[1] >= fit_threshold(None):
            outcome = "memorized"  # --stop-at none runs every epoch; it still says whether the set was fitted
        return TrainResult(
            outcome=outcome, epochs=len(history), history=history, memorized_epoch=self.memorized_epoch,
            seconds_to_memorize=self.seconds_to_memorize, train_loss=train[0], train_acc=train[1],
            val_loss=history[-1].val_loss, val_acc=history[-1].val_acc, test_loss=test[0], test_acc=test[1],
            test_pred=test[2], train_seconds=train_seconds, seconds_per_epoch=seconds_per_epoch,
            images_per_second=images_per_second(n_fit, seconds_per_epoch), parameters=parameters,
            message=self.message)
