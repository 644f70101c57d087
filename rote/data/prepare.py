"""From a dataset and a run's settings to the arrays a run trains on.

The order of the steps is the seed's: scale to x/255 - 0.5 in (N, C, H, W)
float32, the shape the dataset's spec gives; take the first N training images;
draw their labels (for 'permute', from a permutation of the whole label
array); hold out the LAST val_split of those N, before any shuffling (Keras's
validation_split); keep all the test images with their true labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rote.config import seeds_for
from rote.data.corruption import corrupt_inputs, corrupt_labels
from rote.data.registry import channels_first
from rote.errors import ConfigError


@dataclass(frozen=True)
class Prepared:
    x_fit: np.ndarray  # (n_fit, C, H, W) float32, the part that is trained on
    y_fit: np.ndarray  # (n_fit,) int64, possibly corrupted
    x_val: np.ndarray  # (n_val, C, H, W), the last val_split of the first N
    y_val: np.ndarray  # (n_val,), labels drawn the same way as y_fit
    x_test: np.ndarray  # (n_test, C, H, W), every test image
    y_test: np.ndarray  # true labels, always
    labels: np.ndarray  # (N,) the training labels actually used (fit then val)
    true_labels: np.ndarray  # (N,) the dataset's labels for the same images
    changed: np.ndarray  # (N,) bool, labels[i] != true_labels[i]
    classes: int

    @property
    def changed_fraction(self) -> float:
        return float(self.changed.mean()) if len(self.changed) else 0.0


def scale(images: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images as stored -> float32 (N, C, H, W) in [-0.5, 0.5], as the seed: x / 255 - 0.5.

    Float images (a user's .npz, rote.data.usernpz) are used as they are."""
    x = channels_first(images, image_shape)
    return x.astype(np.float32) if x.dtype != np.uint8 else x.astype(np.float32) / 255.0 - 0.5


def prepare(dataset, cfg) -> Prepared:
    n_total = len(dataset.y_train)
    if cfg.n_train > n_total:
        raise ConfigError(f"n_train={cfg.n_train} is larger than {dataset.name}'s {n_total} training images")
    if cfg.n_train < dataset.classes:
        raise ConfigError(f"n_train={cfg.n_train} is smaller than the number of classes ({dataset.classes})")
    s = seeds_for(cfg.seed)
    n = cfg.n_train
    labels, changed = corrupt_labels(dataset.y_train, n, cfg.labels, np.random.default_rng(s["labels"]),
                                     dataset.classes)
    x = scale(dataset.x_train[:n], dataset.image_shape)
    x_test = scale(dataset.x_test, dataset.image_shape)
    x, x_test = corrupt_inputs(x, x_test, cfg.inputs, np.random.default_rng(s["inputs"]))
    split = n - cfg.n_val
    return Prepared(
        x_fit=np.ascontiguousarray(x[:split]), y_fit=labels[:split],
        x_val=np.ascontiguousarray(x[split:]), y_val=labels[split:],
        x_test=np.ascontiguousarray(x_test), y_test=np.asarray(dataset.y_test, dtype=np.int64),
        labels=labels, true_labels=np.asarray(dataset.y_train[:n], dtype=np.int64), changed=changed,
        classes=dataset.classes,
    )
