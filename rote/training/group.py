"""K runs of one architecture trained at once, as one batched model.

The K models' weights are stacked (torch.func.stack_module_state) and one
vmapped forward pass computes all K outputs. Each run keeps what makes it a
separate run: its own initialisation, labels, inputs and data order, its own
optimiser state (Adam and SGD are elementwise, so one optimiser over stacked
weights is K independent optimisers), its own stop rule and its own record.
A run that stops (memorised, collapsed, diverged or out of epochs) leaves the
group, and the others go on.

This pays where one small model leaves the device idle (a GPU at batch 32);
on a CPU whose cores one model already keeps busy it does not.
"""

from __future__ import annotations



from rote.config import RunConfig

# settings that must agree for runs to share one batched model and one optimiser
GROUP_FIELDS = ("dataset", "preprocess", "n_train", "model", "optimizer", "lr", "momentum", "weight_decay",
                "schedule", "step_every", "step_gamma", "batch_size", "val_split", "dropout", "augment_shift",
                "device")


def group_key(cfg: RunConfig) -> tuple:
    return tuple(getattr(cfg, f) for f in GROUP_FIELDS)


def groupable(cfg: RunConfig) -> bool:
    # dropout and augmentation draw per-step randomness that a batched model would draw differently
    return cfg.dropout == 0 and cfg.augment_shift == 0


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


