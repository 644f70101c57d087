"""How well each score finds the labels rote changed.

rote knows which training labels it changed, so every score can be judged as
a detector of mislabelled examples: rank the examples by the score, in the
direction that ``DIRECTIONS`` says means "more likely mislabelled", and ask

- ``auroc``: the probability that a changed example ranks above an unchanged
  one, ties counting one half (the Mann-Whitney U statistic divided by
  n_changed * n_unchanged). 0.5 is chance, 1 a perfect detector, and below 0.5
  the score points the other way.
- ``precision_at_k``: the share of changed labels among the k top-ranked
  examples, with k = the number of changed labels (so precision and recall are
  equal). Chance is k / n.

Conventions, for every function here:

- Higher means more suspicious. ``detection_table`` multiplies each score by
  its direction first.
- NaN ranks as +inf, the most suspicious value, after that multiplication. The
  only NaNs ``example_scores`` makes are ``first_learned`` and
  ``learned_forever`` of examples the network never learned (for good), which
  are the most suspicious examples by those scores.
- Ties are never broken by position. AUROC gives tied examples their average
  rank. Precision@k shares the slots left at the cut-off among the examples
  tied there: if the top k ends inside a tied group of size g holding p
  changed labels, with s slots left, the group adds s * p / g hits. That is
  the mean precision over every order in which the tie could be broken, and it
  is the same on every call.
- With no changed labels, or only changed labels, AUROC is undefined and is
  NaN, not an error; precision@k is NaN when k = 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rote.analysis.scores import format_csv
from rote.atomic import write_atomic
from rote.errors import DataError

# +1: a higher score means more likely mislabelled; -1: a lower score does.
DIRECTIONS = {
    "first_learned": +1,  # learned late, or never
    "learned_forever": +1,
    "forgetting_events": +1,
    "confidence": -1,  # low probability of the given label
    # In a run trained until it fits the training set, a changed label goes
    # from improbable to probable late, so its probability varies the most.
    # Swayamdipta et al. found mislabelled examples at LOW variability
    # ("hard to learn") when training stops before they are fit; an AUROC
    # below 0.5 here says a run is in that regime.
    "variability": +1,
    "correctness": -1,
    "aum": -1,  # Pleiss et al.: mislabelled examples have low or negative margins
    "el2n": +1,
    "final_loss": +1,
}


def _suspicion(scores) -> np.ndarray:
    """float64 copy with NaN as +inf, so NaN is the most suspicious value and ties with itself."""
    s = np.array(scores, dtype=np.float64)
    s[np.isnan(s)] = np.inf
    return s


def _check(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    s, pos = _suspicion(scores), np.asarray(positives, dtype=bool)
    if s.ndim != 1 or s.shape != pos.shape:
        raise DataError(f"scores {s.shape} and positives {pos.shape} must be two (N,) arrays")
    return s, pos


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x ascending, tied values all getting the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each distinct value
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def auroc(scores, positives) -> float:
    """P(score of a positive > score of a negative) + P(equal) / 2; NaN if either class is empty.

    Higher scores are predicted positive; NaN scores count as +inf.
    """
    s, pos = _check(scores, positives)
    n1 = int(pos.sum())
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    # Mann-Whitney: the positives' rank sum, less its minimum n1 (n1 + 1) / 2,
    # counts the (positive, negative) pairs the positive wins, ties as one half.
    u = average_ranks(s)[pos].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def precision_at_k(scores, positives, k: int | None = None) -> float:
    """Share of positives among the k highest scores (default k = number of positives).

    NaN scores count as +inf. A tie at the cut-off is shared: the tied group
    fills the slots left with its own share of positives, which is the mean
    over every way of breaking the tie. NaN when k is 0.
    """
    s, pos = _check(scores, positives)
    k = int(pos.sum()) if k is None else int(k)
    if k == 0:
        return float("nan")
    if not 0 < k <= len(s):
        raise DataError(f"precision@k: k = {k} is not between 1 and the number of examples {len(s)}")
    cut = np.partition(s, len(s) - k)[len(s) - k]  # the k-th highest score
    above, tied = s > cut, s == cut
    slots = k - int(above.sum())  # filled from the tied group
    hits = pos[above].sum() + slots * pos[tied].sum() / tied.sum()
    return float(hits / k)


def detection_table(scores: dict[str, np.ndarray], changed) -> list[dict]:
    """One row per score: {score, direction, auroc, precision_at_k, k, n}, k = number of changed labels."""
    changed = np.asarray(changed, dtype=bool)
    rows = []
    for name, s in scores.items():
        if name not in DIRECTIONS:
            raise DataError(f"score '{name}' has no direction in DIRECTIONS")
        d = DIRECTIONS[name]
        oriented = d * np.asarray(s, dtype=np.float64)  # NaN stays NaN, ranked most suspicious
        rows.append({"score": name, "direction": d, "auroc": auroc(oriented, changed),
                     "precision_at_k": precision_at_k(oriented, changed),
                     "k": int(changed.sum()), "n": int(changed.size)})
    return rows


def write_detection_csv(path: Path | str, rows: list[dict]) -> None:
    """detection.csv, one row per score, written atomically; NaN as 'nan'."""
    write_atomic(Path(path), format_csv(rows).encode())
