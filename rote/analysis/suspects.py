"""Which training labels are most likely wrong: a ranking of one run's examples by a training-dynamics score.

The default score is ``correctness``, the share of an example's presentations
at which the model predicted its given label (Swayamdipta et al. 2020): a
wrong label is fitted late, if at all, so it is predicted right at few
presentations. It was chosen on the evidence rote can produce itself, since it
knows which labels it changed: in the `corruption` study (seed CNN, N = 3,000,
five seeds a level, every run memorised) it had the highest AUROC for the
changed labels of the nine scores at every level (tied with variability at
P = 0.4), 0.997 at P = 0.2 down to 0.933 at P = 0.8
(docs/tables/corruption-detection.md), and unlike ``variability`` its
direction does not depend on whether the run went on to memorise: an
example never fitted is never right, whether training stopped early or not.
Any score of rote.analysis.scores can be chosen instead.

Ties (common for correctness, a fraction of the presentations) are broken by
``confidence``, the mean probability of the given label, then by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from rote.analysis.detection import DIRECTIONS, auroc, precision_at_k
from rote.errors import DataError

DEFAULT_SCORE = "correctness"
TIE_BREAK = "confidence"


@dataclass(frozen=True)
class Ranking:
    order: np.ndarray  # row positions, most suspicious first
    score: str
    values: np.ndarray  # the score of each row (as recorded)


def rank(scores: dict, score: str = DEFAULT_SCORE) -> Ranking:
    """The rows of a run's scores (read_scores' columns) most suspicious first, by ``score``'s direction."""
    if score not in DIRECTIONS:
        raise DataError(f"unknown score {score!r}; choose one of {', '.join(DIRECTIONS)}")
    if score not in scores:
        raise DataError(f"this run's scores have no {score!r} column")
    d = DIRECTIONS[score]
    primary = d * np.asarray(scores[score], dtype=np.float64)
    primary = np.where(np.isnan(primary), np.inf, primary)  # never learned: most suspicious
    tie = scores.get(TIE_BREAK)
    secondary = (DIRECTIONS[TIE_BREAK] * np.asarray(tie, dtype=np.float64) if tie is not None and score != TIE_BREAK
                 else np.zeros_like(primary))
    secondary = np.where(np.isnan(secondary), np.inf, secondary)
    # lexsort: the last key is the primary one; negated for "highest first"
    order = np.lexsort((np.arange(len(primary)), -secondary, -primary))
    return Ranking(order=order, score=score, values=np.asarray(scores[score], dtype=np.float64))


def suspect_rows(scores: dict, ranking: Ranking, top: Optional[int] = None, judged: bool = True) -> list[dict]:
    """One dict per example, most suspicious first: rank, index, given_label, believed_label (when recorded),
    score; with ``judged`` (rote changed the labels itself), also true_label and changed."""
    order = ranking.order if top is None else ranking.order[:top]
    rows = []
    for r, i in enumerate(order, start=1):
        row = {"rank": r, "index": int(scores["index"][i]), "given_label": int(scores["label"][i])}
        if "believed_label" in scores:
            row["believed_label"] = int(scores["believed_label"][i])
        row[ranking.score] = float(ranking.values[i])
        if judged:
            row["true_label"] = int(scores["true_label"][i])
            row["changed"] = bool(scores["changed"][i])
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Judgement:
    """How well the ranking finds the labels rote changed (only where it changed some)."""

    changed: int
    n: int
    auroc: float
    precision_at_k: float  # k = the number of changed labels


def judge(scores: dict, ranking: Ranking) -> Optional[Judgement]:
    changed = np.asarray(scores["changed"], dtype=bool)
    if not changed.any() or changed.all():
        return None
    oriented = DIRECTIONS[ranking.score] * ranking.values
    return Judgement(int(changed.sum()), int(changed.size), auroc(oriented, changed),
                     precision_at_k(oriented, changed))
