"""Label and input corruptions: pure functions of the data and a local generator.

Every corruption is drawn once, before training, from a ``numpy.random.Generator``
that the caller seeds; nothing here touches global RNG state. Test labels are
never corrupted. Label corruptions return the new labels together with the mask
of labels that actually changed, so a run can record what was done to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rote.errors import ConfigError


@dataclass(frozen=True)
class LabelCorruption:
    kind: str  # permute | random | partial | flip | true
    p: float = 1.0


def parse_label_corruption(spec: str) -> LabelCorruption:
    """'permute', 'random', 'true', 'partial:0.4' or 'flip:0.2'."""
    kind, _, arg = spec.partition(":")
    if kind in ("permute", "random", "true") and not arg:
        return LabelCorruption(kind)
    if kind in ("partial", "flip"):
        try:
            p = float(arg)
        except ValueError:
            p = float("nan")
        if not (0.0 <= p <= 1.0):
            raise ConfigError(f"labels '{spec}': {kind} needs a probability in [0, 1], e.g. '{kind}:0.2'")
        return LabelCorruption(kind, p)
    raise ConfigError(f"unknown labels '{spec}'; choose permute, random, true, partial:P or flip:P")


def parse_input_corruption(spec: str) -> str:
    if spec not in ("none", "shuffled-pixels", "random-pixels", "gaussian"):
        raise ConfigError(f"unknown inputs '{spec}'; choose none, shuffled-pixels, random-pixels or gaussian")
    return spec


def corrupt_labels(
    all_labels: np.ndarray, n: int, spec: str, rng: np.random.Generator, classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Labels for the first ``n`` training images, and the mask of those that changed.

    ``all_labels`` is the whole training label array: the seed's 'permute'
    shuffles all of it and keeps the first n, so the label marginal stays that
    of the full dataset and every label is independent of its image.
    """
    c = parse_label_corruption(spec)
    true = np.asarray(all_labels[:n], dtype=np.int64)
    if c.kind == "true":
        new = true.copy()
    elif c.kind == "permute":
        # y_train[np.random.permutation(60000)][:3000], as in the seed
        new = np.asarray(all_labels, dtype=np.int64)[rng.permutation(len(all_labels))][:n]
    elif c.kind == "random":
        new = rng.integers(0, classes, size=n, dtype=np.int64)
    elif c.kind == "partial":
        # Zhang et al.: each label is replaced with probability p by a uniform
        # draw, which may land on the true class (so about 0.9 p change).
        replace = rng.random(n) < c.p
        draws = rng.integers(0, classes, size=n, dtype=np.int64)
        new = np.where(replace, draws, true)
    else:  # flip: exactly round(p n) labels move, each to a different class
        k = int(round(c.p * n))
        idx = rng.choice(n, size=k, replace=False)
        new = true.copy()
        new[idx] = (true[idx] + rng.integers(1, classes, size=k)) % classes
    return new, new != true


def corrupt_inputs(
    x_train: np.ndarray, x_test: np.ndarray, spec: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply an input corruption to scaled float images (N, C, H, W), train and test alike.

    A pixel is a position with all its channels: permutations move positions
    and never mix channels.

    shuffled-pixels: one pixel permutation shared by every image;
    random-pixels:   an independent permutation for each image;
    gaussian:        every image replaced by noise with the training images'
                     pixel mean and standard deviation.
    """
    parse_input_corruption(spec)
    if spec == "none":
        return x_train, x_test

    def flat(x):  # (N, C, H, W) -> (N, C, H*W)
        return x.reshape(*x.shape[:2], -1)

    shape_tr, shape_te = x_train.shape, x_test.shape
    pixels = shape_tr[2] * shape_tr[3]
    if spec == "shuffled-pixels":
        perm = rng.permutation(pixels)
        return flat(x_train)[:, :, perm].reshape(shape_tr), flat(x_test)[:, :, perm].reshape(shape_te)
    if spec == "random-pixels":
        def each(x):
            order = np.argsort(rng.random((len(x), pixels)), axis=1)  # one permutation per image
            return np.take_along_axis(flat(x), order[:, None, :], axis=2).reshape(x.shape)
        return each(x_train), each(x_test)
    mean, std = float(x_train.mean()), float(x_train.std())
    noise = lambda shape: rng.normal(mean, std, size=shape).astype(np.float32)  # noqa: E731
    return noise(shape_tr), noise(shape_te)
