"""A loaded dataset in memory, and the one helper that reads an image stack's channel layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rote.errors import DataError

CHANNELS = (1, 3, 4)  # grey, colour, colour with alpha: what a stack's channel axis may hold


def channels_first(images: np.ndarray, image_shape: tuple[int, int, int] | None = None, what: str = "images",
                   layout: str | None = None) -> np.ndarray:
    """View a stack of images as (N, C, H, W), whichever layout it is stored in.

    Files store grey images as (N, H, W) and colour ones channel-last,
    (N, H, W, C), or, as CIFAR's batches do, channel-first.  With the
    dataset's ``image_shape`` (C, H, W) the layout is read off it (and a
    mismatch is a ValueError); without one (a user's file) it is inferred from
    where a channel count of 1, 3 or 4 sits, and a stack such as (N, 3, H, 3),
    where it could sit on either side, needs ``layout`` ('NCHW' or 'NHWC').
    """
    if image_shape is not None:
        c, h, w = image_shape
        if images.shape[1:] == (c, h, w):
            return images
        if images.shape[1:] == (h, w, c):
            return images.transpose(0, 3, 1, 2)
        if c == 1 and images.shape[1:] == (h, w):
            return images[:, None]
        raise ValueError(f"{what} have shape {images.shape}, expected {c}x{h}x{w} images")
    if images.ndim == 3:
        return images[:, None]  # (N, H, W) grey
    if images.ndim == 4:
        first, last = images.shape[1] in CHANNELS, images.shape[3] in CHANNELS
        if layout is not None:
            layout = layout.upper()
            if layout not in ("NCHW", "NHWC"):
                raise DataError(f"{what}: layout must be 'NCHW' or 'NHWC', got {layout!r}")
            first, last = layout == "NCHW", layout == "NHWC"
        elif first and last:
            raise DataError(f"{what} has shape {images.shape}: the channels could be axis 1 (N, C, H, W) or axis 3 "
                            f"(N, H, W, C); say which by saving the array layout='NCHW' or layout='NHWC' in the file")
        if first:
            return images
        if last:
            return images.transpose(0, 3, 1, 2)
    raise DataError(f"{what} has shape {images.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) "
                    f"with C in 1, 3, 4")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, verified dataset.  Arrays are numpy; converting is the caller's job."""

    name: str
    x_train: np.ndarray  # uint8, (N, H, W) grey, (N, H, W, C) or (N, C, H, W) colour, as stored
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # the directory or file the arrays were read from
    image_shape: tuple[int, int, int]  # (C, H, W), from the spec
    classes: int
    sha256: str | None = None  # of a user's file (rote.data.npz); pinned datasets need none

    def __post_init__(self) -> None:
        # Checksums already vouch for real data; this guards hand-built
        # Datasets (tests, other loaders) against silent shape mistakes.
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.uint8 and x.dtype != np.float32:  # float32: a user's images, used as they are
                raise ValueError(f"x_{split} must be uint8 or float32, got {x.dtype}")
            channels_first(x, self.image_shape, f"x_{split}")
            if y.dtype != np.int64 or y.shape != (len(x),):
                raise ValueError(f"y_{split} must be int64 ({len(x)},), got {y.dtype} {y.shape}")
            if len(y) and (y.min() < 0 or y.max() >= self.classes):
                raise ValueError(f"y_{split} has labels outside 0..{self.classes - 1}")
