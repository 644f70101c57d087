"""From a dataset and a run's settings to the arrays a run trains on.

The order of the steps is the seed's: scale to x/255 - 0.5 in (N, C, H, W)
float32, the shape the dataset's spec gives; take the first N training images;
draw their labels (for 'permute', from a permutation of the whole label
array); hold out the LAST val_split of those N, before any shuffling (Keras's
validation_split); keep all the test images with their true labels.

``subset`` then trains on a random part of the training part (the first N
minus the validation part): round(subset * n_fit) of its images, drawn from
the run's seed (its "subset" stream).  Labels and inputs are corrupted before,
on all N, so the subset never changes which labels are corrupted; with
``label_seed`` the labels come from that seed instead, and runs of several
seeds (several subsets) share one label set, as Feldman & Zhang's estimate
needs (input corruptions still follow ``seed``).  The held-out rows of the training part are kept (``x_out``) so the
finished model can be asked about them.

``preprocess: zhang`` adds Zhang et al.'s preprocessing right after scaling,
to training and test images alike: a centre crop to 28x28 and per-image
whitening.  Input corruptions come after it, so they act on exactly the
pixels the network sees: shuffled pixels are a permutation of its whole
input (nothing the crop would have cut is smuggled in) and Gaussian inputs
match the mean and spread of what it would otherwise see.  Whitening is the
same function of an image's pixels in any order, so for the two pixel
permutations the order only decides which pixels the crop keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rote.data.corruption import corrupt_inputs, corrupt_labels
from rote.data.dataset import channels_first
from rote.errors import ConfigError
from rote.seeds import seeds_for


@dataclass(frozen=True)
class Prepared:
    x_fit: np.ndarray  # (n_fit, C, H, W) float32, the part that is trained on (H = W = 28 after preprocess zhang)
    y_fit: np.ndarray  # (n_fit,) int64, possibly corrupted
    x_val: np.ndarray  # (n_val, C, H, W), the last val_split of the first N
    y_val: np.ndarray  # (n_val,), labels drawn the same way as y_fit
    x_test: np.ndarray  # (n_test, C, H, W), every test image
    y_test: np.ndarray  # true labels, always
    labels: np.ndarray  # (N,) the training labels actually used (fit then val)
    true_labels: np.ndarray  # (N,) the dataset's labels for the same images
    changed: np.ndarray  # (N,) bool, labels[i] != true_labels[i]
    classes: int
    # the dataset index of each x_fit row: 0..n_fit-1, or, with a subset, the images drawn (ascending)
    fit_index: np.ndarray  # (n_fit,) int64
    # the images of the training part that a subset left out (empty without one), with their labels
    x_out: np.ndarray  # (n_out, C, H, W)
    y_out: np.ndarray  # (n_out,) int64
    out_index: np.ndarray  # (n_out,) int64, ascending

    @property
    def changed_fraction(self) -> float:
        return float(self.changed.mean()) if len(self.changed) else 0.0

    @property
    def n_part(self) -> int:
        """Images in the training part: the first N less the validation part, subset or not."""
        return len(self.fit_index) + len(self.out_index)

    def x_part(self) -> np.ndarray:
        """(n_part, C, H, W): every image of the training part, in dataset order (subset or not)."""
        if not len(self.out_index):
            return self.x_fit
        x = np.empty((self.n_part, *self.x_fit.shape[1:]), dtype=self.x_fit.dtype)
        x[self.fit_index], x[self.out_index] = self.x_fit, self.x_out
        return x


def scale(images: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images as stored -> float32 (N, C, H, W) in [-0.5, 0.5], as the seed: x / 255 - 0.5.

    Float images (a user's .npz, rote.data.npz) are used as they are."""
    x = channels_first(images, image_shape)
    return x.astype(np.float32) if x.dtype != np.uint8 else x.astype(np.float32) / 255.0 - 0.5


ZHANG_CROP = 28


def crop_center(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, size, size), the middle of each image.

    The offsets are (H - size) // 2 and (W - size) // 2, as TensorFlow's
    resize_image_with_crop_or_pad takes them: rows and columns 2..29 of a
    32x32 CIFAR image.
    """
    h, w = x.shape[2:]
    if h < size or w < size:
        raise ConfigError(f"preprocess 'zhang' crops to {size}x{size}, but the images are {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top:top + size, left:left + size]


def standardize_per_image(x: np.ndarray, pixel_scale: float = 255.0) -> np.ndarray:
    """Each image minus its mean, over its adjusted standard deviation (Zhang et al., appendix A).

    As tf.image.per_image_standardization: mean and (population) standard
    deviation over all of an image's values, channels included, and a
    denominator of max(std, 1 / sqrt(number of values)) so that a flat image
    is not blown up.  Zhang et al. applied it to pixels in 0..255; rote's
    images are x/255 - 0.5, and the result is the same once the floor is
    divided by 255 too (``pixel_scale``), so a near-flat image is treated as
    it was in their pipeline.
    """
    flat = x.reshape(len(x), -1)  # (N, C*H*W)
    mean = flat.mean(axis=1, keepdims=True, dtype=np.float64)  # float64 sums, float32 result
    std = flat.std(axis=1, keepdims=True, dtype=np.float64)
    floor = 1.0 / (np.sqrt(flat.shape[1]) * pixel_scale)
    scale = np.maximum(std, floor)
    return ((flat - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32).reshape(x.shape)


def preprocess_images(x: np.ndarray, how: str) -> np.ndarray:
    """Apply a run's preprocessing to scaled images (N, C, H, W)."""
    if how == "none":
        return x
    if how == "zhang":
        return standardize_per_image(crop_center(x, ZHANG_CROP))
    raise ConfigError(f"unknown preprocess '{how}'; choose none or zhang")


def input_shape(image_shape: tuple[int, int, int], how: str) -> tuple[int, int, int]:
    """The (C, H, W) a model sees for a dataset's images under a preprocessing."""
    c, h, w = image_shape
    return (c, ZHANG_CROP, ZHANG_CROP) if how == "zhang" else (c, h, w)


def prepare(dataset, cfg) -> Prepared:
    n_total = len(dataset.y_train)
    if cfg.n_train > n_total:
        raise ConfigError(f"n_train={cfg.n_train} is larger than {dataset.name}'s {n_total} training images")
    if cfg.n_train < dataset.classes:
        raise ConfigError(f"n_train={cfg.n_train} is smaller than the number of classes ({dataset.classes})")
    s = seeds_for(cfg.seed)
    n = cfg.n_train
    label_stream = s["labels"] if cfg.label_seed is None else seeds_for(cfg.label_seed)["labels"]
    labels, changed = corrupt_labels(dataset.y_train, n, cfg.labels, np.random.default_rng(label_stream),
                                     dataset.classes)
    x = preprocess_images(scale(dataset.x_train[:n], dataset.image_shape), cfg.preprocess)
    x_test = preprocess_images(scale(dataset.x_test, dataset.image_shape), cfg.preprocess)
    x, x_test = corrupt_inputs(x, x_test, cfg.inputs, np.random.default_rng(s["inputs"]))
    split = n - cfg.n_val
    fit_index, out_index = subset_split(split, cfg.n_subset, s["subset"])
    fit = slice(0, split) if cfg.subset is None else fit_index  # a slice copies nothing
    return Prepared(
        x_fit=np.ascontiguousarray(x[fit]), y_fit=labels[fit],
        x_val=np.ascontiguousarray(x[split:]), y_val=labels[split:],
        x_test=np.ascontiguousarray(x_test), y_test=np.asarray(dataset.y_test, dtype=np.int64),
        labels=labels, true_labels=np.asarray(dataset.y_train[:n], dtype=np.int64), changed=changed,
        classes=dataset.classes, fit_index=fit_index,
        x_out=np.ascontiguousarray(x[out_index]), y_out=labels[out_index], out_index=out_index,
    )


def subset_split(n_part: int, size, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit_index, out_index) of a training part of n_part images: `size` of them drawn without
    replacement from default_rng(seed) and the rest, both ascending; all of them and none without a size."""
    every = np.arange(n_part, dtype=np.int64)
    if size is None:
        return every, every[:0]
    chosen = np.zeros(n_part, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n_part, size=size, replace=False)] = True
    return every[chosen], every[~chosen]
