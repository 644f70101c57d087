"""Memorised bits: how much a model knows about labels that carry no information about the image.

With labels drawn independently of the images, nothing a model predicts about
them can come from generalisation: every bit it saves when coding them is a
memorised bit. Following Morris et al. (2025, "How much do language models
memorize?"), the bits a model holds about its training labels are the
compression it achieves over the best code that does not look at the images:

    memorised_bits = sum over scored examples i of  H_i - (-log2 p(y_i | x_i))

where p is the model's probability of the label it was given (eval mode, at the
end of training) and H_i the entropy of that label under the corruption that
drew it, which rote knows exactly:

- ``random``: a uniform draw over K classes, H_i = log2 K, every example scored;
- ``permute`` (the seed's): a draw from the dataset's label marginal, H_i =
  H(marginal), estimated from the given labels of the training part, every
  example scored;
- ``partial:P`` and ``flip:P``: only the changed labels are random; the others
  are the truth, and predicting them is generalisation, not memorisation. Only
  the changed examples are scored, and a changed label is uniform over the K - 1
  classes other than the true one, H_i = log2(K - 1);
- ``true``: nothing to score (None).

A model that predicts the label it was given with certainty stores H_i bits for
each scored example; one that predicts the marginal (or, for changed labels,
the uniform distribution over the other classes) stores 0; a model worse than
that code is negative, and the sum says so rather than being clipped.
``bits_per_parameter`` divides by the model's trainable parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

LN2 = math.log(2.0)


@dataclass(frozen=True)
class MemorisedBits:
    bits: float  # memorised bits over the scored examples
    reference_bits: float  # sum of H_i: what a model that fits every scored label with certainty would hold
    scored: int  # examples scored
    scope: str  # "all" or "changed"


def bits_from_mean_loss(n_fit: int, loss_nats: float, entropy_bits: float) -> float:
    """Memorised bits of ``n_fit`` labels of entropy ``entropy_bits`` each from the mean exact cross-entropy
    over them (nats): what the model saves against the best code that ignores the images,
    n_fit * H - sum_i -log2 p(y_i | x_i), with the sum taken from the mean."""
    return float(n_fit * (entropy_bits - loss_nats / LN2))


def label_entropy_bits(labels: np.ndarray, classes: int) -> float:
    """Entropy in bits of the empirical distribution of ``labels`` over ``classes``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def memorised_bits(label_kind: str, loss_nats: np.ndarray, given: np.ndarray, changed: np.ndarray,
                   classes: int) -> Optional[MemorisedBits]:
    """Memorised bits of a model whose per-example loss -ln p(y_i | x_i) on the training part is ``loss_nats``.

    label_kind: the corruption's kind (permute, random, partial, flip, true); given: the labels trained on;
    changed: which of them differ from the truth. None where the bits are not defined (true labels, no
    changed label, fewer than two classes).
    """
    loss = np.asarray(loss_nats, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    changed = np.asarray(changed, dtype=bool)
    if not (loss.shape == given.shape == changed.shape) or loss.ndim != 1:
        raise ValueError("loss_nats, given and changed must be 1-D arrays of one length")
    if classes < 2 or loss.size == 0:
        return None
    if label_kind == "random":
        h, scope, sel = math.log2(classes), "all", slice(None)
    elif label_kind == "permute":
        h, scope, sel = label_entropy_bits(given, classes), "all", slice(None)
    elif label_kind in ("partial", "flip"):
        if not changed.any():
            return None
        h, scope, sel = math.log2(classes - 1), "changed", changed
    else:
        return None
    scored = loss[sel]
    return MemorisedBits(bits=float(h * scored.size - scored.sum() / LN2), reference_bits=float(h * scored.size),
                         scored=int(scored.size), scope=scope)
