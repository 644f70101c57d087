"""Which runs of a sweep train together as one stacked model (rote.training.loop.train_many)."""

from __future__ import annotations

from rote.config import RunConfig
from rote.models import is_factory_path
from rote.training.loop import SHARED_FIELDS


def group_key(cfg: RunConfig) -> tuple:
    return tuple(getattr(cfg, f) for f in SHARED_FIELDS)


def groupable(cfg: RunConfig) -> bool:
    # dropout and augmentation draw per-step randomness that a stacked model would draw differently;
    # a stacked (vmapped) forward cannot run channels-last, so a run that insists on it trains alone
    # a user's model (package.module:function) may hold layers a stacked model cannot vmap: it trains alone
    return (cfg.dropout == 0 and cfg.augment_shift == 0 and cfg.channels_last is not True
            and not is_factory_path(cfg.model))


def group_runs(cfgs: list[RunConfig], k: int) -> list[list[RunConfig]]:
    """Split runs into groups of at most k compatible runs, keeping their order."""
    buckets: dict[tuple, list[RunConfig]] = {}
    groups = []
    for c in cfgs:
        if k <= 1 or not groupable(c):
            groups.append([c])
            continue
        b = buckets.setdefault(group_key(c), [])
        b.append(c)
        if len(b) == k:
            groups.append(b[:])
            b.clear()
    groups.extend(b for b in buckets.values() if b)
    return groups
