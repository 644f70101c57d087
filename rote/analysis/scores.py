"""Per-example scores from the training dynamics in examples.npz.

Every score is one value per training example, computed from the record of
that example's presentations (E epochs, one presentation each; epochs are
counted from 1). The record is float16; every score is computed in float64.

============================  =====================================================================
score                         definition (for example i; c = correct[:, i], E epochs)
============================  =====================================================================
``first_learned``             first epoch e (1-based) with c[e] true; NaN if never correct
``learned_forever``           first epoch e with c[e], ..., c[E] all true; NaN if the last is wrong
``forgetting_events``         number of e with c[e] true and c[e+1] false; E if never correct
``confidence``                mean over epochs of prob
``variability``               population standard deviation over epochs of prob
``correctness``               fraction of epochs with c true
``aum``                       mean over epochs of margin
``el2n``                      el2n at one early epoch (``el2n_epoch``)
``final_loss``                loss at the last recorded epoch
============================  =====================================================================

Sources:

- ``forgetting_events``, ``first_learned``: Toneva et al. 2019, "An empirical
  study of example forgetting during deep neural network learning". A
  forgetting event is a transition from correct to wrong between consecutive
  presentations. An example never correct in any presentation gets E events,
  as in the authors' code (example_forgetting, ``sort_examples_by_forgetting``
  adds the number of presentations), so it ranks as the most forgettable.
- ``learned_forever``: Maini et al. 2022, "Characterizing datapoints via
  second-split forgetting", first-split learning time: the earliest epoch
  after which the example is classified correctly in every later epoch. Here
  that is the first e with c[e:] all true, through the last recorded epoch.
- ``confidence``, ``variability``, ``correctness``: Swayamdipta et al. 2020,
  "Dataset cartography: mapping and diagnosing datasets with training
  dynamics". The standard deviation divides by E (their equation 2).
- ``aum``: Pleiss et al. 2020, "Identifying mislabeled data using the area
  under the margin ranking": the margin z_y - max_{k != y} z_k of the logits,
  averaged over the epochs recorded. It is the score only; their threshold
  from deliberately mislabelled "threshold samples" is not computed.
- ``el2n``: Paul et al. 2021, "Deep learning on a data diet: finding important
  examples early in training": || softmax(x) - onehot(y) ||_2 early in training.
  They average it over several initialisations; a run has one, so this is a
  single-run estimate, noisier than theirs. The default epoch is min(10, E):
  early, as they advise (they scored at epoch 20 of 200 on CIFAR-10), and a
  recorded epoch even in a short run. How early is early depends on how fast
  a run fits its data; pass ``el2n_epoch`` to choose.
- ``final_loss``: the cross-entropy of the last presentation, a baseline any
  detector should beat.

All values are taken at the example's presentation during training (training
mode, the logits of the training step), not in a separate evaluation pass;
Toneva et al. and Pleiss et al. record them the same way.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from rote.analysis.examples import ExampleRecord
from rote.atomic import write_atomic
from rote.errors import ConfigError, DataError

SCORES = ("first_learned", "learned_forever", "forgetting_events", "confidence", "variability",
          "correctness", "aum", "el2n", "final_loss")

DEFAULT_EL2N_EPOCH = 10


def example_scores(rec: ExampleRecord, el2n_epoch: int | None = None) -> dict[str, np.ndarray]:
    """Every score in ``SCORES`` for every example: name -> (N,) array (see the module docstring).

    ``el2n_epoch`` is 1-based; None means min(10, E).
    """
    E = rec.epochs
    if E == 0:
        raise DataError("examples: no epochs recorded, so there is nothing to score")
    if el2n_epoch is None:
        el2n_epoch = int(rec.epoch[min(DEFAULT_EL2N_EPOCH, E) - 1])
    if el2n_epoch not in rec.epoch:
        raise ConfigError(f"el2n_epoch {el2n_epoch} is not a recorded epoch ({rec.epoch[0]} to {rec.epoch[-1]})")
    el2n_row = int(np.flatnonzero(rec.epoch == el2n_epoch)[0])

    c = rec.correct  # (E, N) bool
    ever = c.any(axis=0)
    when = rec.epoch.astype(np.float64)  # the epoch of each recorded row
    first = np.where(ever, when[c.argmax(axis=0)], np.nan)  # argmax finds the first True

    # The all-correct suffix: the run of True at the end of each column. The
    # example is learned for good at epoch E - run + 1, if the run is not empty.
    run = np.flip(c, axis=0).cumprod(axis=0).sum(axis=0)  # (N,)
    forever = np.where(run > 0, when[np.clip(E - run, 0, E - 1)], np.nan)

    forgotten = (c[:-1] & ~c[1:]).sum(axis=0)  # (N,) correct at e, wrong at e + 1
    forgotten = np.where(ever, forgotten, E)

    return {
        "first_learned": first,
        "learned_forever": forever,
        "forgetting_events": forgotten.astype(np.int64),
        "confidence": rec.prob.mean(axis=0, dtype=np.float64),
        "variability": rec.prob.std(axis=0, dtype=np.float64),  # ddof=0: divide by E
        "correctness": c.mean(axis=0, dtype=np.float64),
        "aum": rec.margin.mean(axis=0, dtype=np.float64),
        "el2n": rec.el2n[el2n_row].astype(np.float64),
        "final_loss": rec.loss[-1].astype(np.float64),
    }


def believed_labels(rec: ExampleRecord) -> np.ndarray | None:
    """The class the model predicted most often at each example's presentations (ties: the smaller class);
    None for a record that did not keep its predictions."""
    if rec.pred is None or rec.epochs == 0:
        return None
    classes = int(max(rec.pred.max(), rec.label.max())) + 1
    counts = np.zeros((classes, rec.n), dtype=np.int32)
    cols = np.arange(rec.n)
    for row in rec.pred:  # one epoch at a time: (classes, N) counts, never (E, classes, N)
        np.add.at(counts, (row, cols), 1)
    return counts.argmax(0)


def scores_rows(rec: ExampleRecord, scores: dict[str, np.ndarray]) -> list[dict]:
    """One dict per example: index, label, true_label, changed, believed_label (when the record kept its
    predictions), then every score."""
    for name, s in scores.items():
        if s.shape != (rec.n,):
            raise DataError(f"score '{name}' has shape {s.shape}, expected ({rec.n},)")
    believed = believed_labels(rec)
    cols = {"index": rec.index, "label": rec.label, "true_label": rec.true_label, "changed": rec.changed,
            **({"believed_label": believed} if believed is not None else {}), **scores}
    values = {k: v.tolist() for k, v in cols.items()}  # Python ints, floats and bools
    return [{k: values[k][i] for k in cols} for i in range(rec.n)]


def write_scores_csv(path: Path | str, rec: ExampleRecord, scores: dict[str, np.ndarray]) -> None:
    """scores.csv, one row per example, written atomically; NaN is written as 'nan' (pandas reads it as NaN)."""
    write_atomic(Path(path), format_csv(scores_rows(rec, scores)).encode())


def format_csv(rows: list[dict]) -> str:
    """CSV text of rows sharing their keys; floats as repr (exact), NaN as 'nan', bools as True/False."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if rows:
        w.writerow(list(rows[0]))
    for r in rows:
        w.writerow([_cell(v) for v in r.values()])
    return buf.getvalue()


def _cell(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)  # 'nan', 'inf', '-inf'
    return "" if v is None else v
