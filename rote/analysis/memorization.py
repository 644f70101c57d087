"""Feldman & Zhang's memorisation and influence estimates from models trained on subsets.

Feldman & Zhang 2020, "What neural network memorizes and why: discovering the
long tail via influence estimation". The memorisation of training example i
by a training algorithm A on data S is

    mem(A, S, i) = P[h(x_i) = y_i | h = A(S)] - P[h(x_i) = y_i | h = A(S without i)],

how much more often the model gets i's given label right when i is in its
training set. Retraining without each example in turn is too costly, so they
train K models, each on a random subset of S (70% of it in their runs), and
compare, for each i, the models whose subset held i with those whose subset
did not:

    mem_i = mean_k [correct_ki | i in subset k] - mean_k [correct_ki | i not in subset k]

The influence of training example i on test example j is the same difference
for test example j's correctness:

    infl_ij = mean_k [correct_kj | i in subset k] - mean_k [correct_kj | i not in subset k]

``correct`` is each model's prediction after training, on every example, with
the example's given label; which subset a model saw is ``masks``.
"""

from __future__ import annotations

import numpy as np

from rote.errors import ConfigError, DataError


def subset_masks(n: int, k: int, ratio: float, seed: int) -> np.ndarray:
    """(K, N) bool: row m marks model m's training subset, round(ratio * n) examples drawn without replacement.

    Rows are drawn one after another from np.random.default_rng(seed), so the
    same arguments give the same masks.
    """
    if not 0.0 < ratio < 1.0:
        # at 0 or 1 no example is ever both in and out, and every estimate is NaN
        raise ConfigError(f"subset ratio {ratio} must lie strictly between 0 and 1")
    if k < 1 or n < 1:
        raise ConfigError(f"subset masks need at least one model and one example (got k={k}, n={n})")
    rng = np.random.default_rng(seed)
    size = round(float(ratio) * n)
    masks = np.zeros((k, n), dtype=bool)
    for row in masks:
        row[rng.choice(n, size=size, replace=False)] = True
    return masks


def _in_out(masks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """masks as bool, and per example how many models held it in (n1) and out (n0)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2:
        raise DataError(f"masks must be (K, N), got shape {masks.shape}")
    n1 = masks.sum(axis=0)  # (N,)
    return masks, n1, masks.shape[0] - n1


def memorization(masks, correct) -> tuple[np.ndarray, np.ndarray]:
    """mem (N,) and its standard error (N,), from masks (K, N) and correct (K, N).

    With p1, n1 the share correct and the number of models that held i in,
    and p0, n0 the same for those that held it out:
    mem_i = p1 - p0 and se_i = sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0),
    the binomial standard error of a difference of two independent shares.
    Both are NaN where n1 or n0 is 0.
    """
    masks, n1, n0 = _in_out(masks)
    correct = np.asarray(correct, dtype=bool)
    if correct.shape != masks.shape:
        raise DataError(f"correct {correct.shape} must have the shape of masks {masks.shape}")
    hits_in = (masks & correct).sum(axis=0)  # (N,)
    hits_out = (~masks & correct).sum(axis=0)
    # Where n1 is 0, hits_in is 0 too, and 0 / 0 is NaN (likewise n0); NaN carries into se.
    with np.errstate(divide="ignore", invalid="ignore"):
        p1 = hits_in / n1
        p0 = hits_out / n0
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    return p1 - p0, se


def influence(masks, correct_test) -> np.ndarray:
    """infl (N, M) float32 from masks (K, N) and correct_test (K, M); rows NaN where n1 or n0 is 0.

    One matrix product (masks^T @ correct_test) instead of a loop over pairs. Memory: the result and
    one temporary are N x M float32 each (N = 50,000 and M = 10,000 take
    4 GB); for less, pass a slice of the test columns at a time. Counts are
    exact in float32 for K below 2**24 models.
    """
    masks, n1, n0 = _in_out(masks)
    correct_test = np.asarray(correct_test, dtype=bool)
    if correct_test.ndim != 2 or correct_test.shape[0] != masks.shape[0]:
        raise DataError(f"correct_test {correct_test.shape} must be (K, M) with K = {masks.shape[0]} models")
    # A row whose n1 is 0 has no hits in (0 / 0); one whose n0 is 0 has all of
    # them in, so hits_in - total is 0 (0 / 0): either way the row is NaN.
    m = masks.astype(np.float32)
    c = correct_test.astype(np.float32)
    hits_in = m.T @ c  # (N, M): models holding i that get j right
    total = c.sum(axis=0)  # (M,): models that get j right
    with np.errstate(divide="ignore", invalid="ignore"):
        infl = hits_in / n1[:, None].astype(np.float32)  # P[correct_j | i in]
        hits_in -= total  # now minus the models without i that get j right
        hits_in /= n0[:, None].astype(np.float32)  # -P[correct_j | i out]
    infl += hits_in
    return infl
