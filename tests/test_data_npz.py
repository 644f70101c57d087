"""A user's npz that is quietly wrong is refused in one line, naming the file and what to do."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from rote.data.sources import load_dataset
from rote.errors import DataError


def write(path, x_train=None, y_train=None, x_test=None, y_test=None, **extra):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8) if x_train is None else x_train
    x_test = rng.integers(0, 256, (6, *x_train.shape[1:]), dtype=np.uint8) if x_test is None else x_test
    y_train = np.arange(len(x_train)) % 4 if y_train is None else y_train
    y_test = np.arange(len(x_test)) % 4 if y_test is None else y_test
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    return f"npz:{path}"


def refused(name: str) -> str:
    with pytest.raises(DataError) as err:
        load_dataset(name)
    msg = str(err.value)
    assert "\n" not in msg and name[4:] in msg
    return msg


def test_float_pixels_in_0_255_are_refused_naming_the_scale(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (20, 8, 8, 3)).astype(np.float32)
    msg = refused(write(tmp_path / "d.npz", x_train=x, x_test=x[:6] / 255))
    assert "[x_train]" in msg and "0-255" in msg and "x/255 - 0.5" in msg
    # the same pixels scaled are used as they are
    ds = load_dataset(write(tmp_path / "ok.npz", x_train=x / 255 - 0.5, x_test=x[:6] / 255 - 0.5))
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 0.5


def test_nan_and_inf_pixels_are_counted(tmp_path):
    x = np.random.default_rng(2).standard_normal((20, 8, 8, 3)).astype(np.float32)
    x[3, 0, 0, 0] = x[5, 1, 2, 1] = x[7, 0, 0, 2] = np.nan
    x[9, 4, 4, 0], x[11, 0, 1, 1] = np.inf, -np.inf
    msg = refused(write(tmp_path / "d.npz", x_train=x, x_test=np.zeros((6, 8, 8, 3), np.float32)))
    assert "[x_train] has 5 non-finite pixels (3 NaN, 2 infinite)" in msg


def test_test_labels_beyond_the_training_labels_are_refused(tmp_path):
    msg = refused(write(tmp_path / "d.npz", y_test=np.array([0, 1, 2, 3, 4, 6])))
    assert "[y_test] has 2 labels above 3" in msg and "up to 6" in msg


@pytest.mark.parametrize("layout, image_shape", [("NCHW", (3, 8, 3)), ("NHWC", (3, 3, 8))])
def test_ambiguous_layout_asks_which_and_the_answer_is_used(tmp_path, layout, image_shape):
    x = np.random.default_rng(3).integers(0, 256, (20, 3, 8, 3), dtype=np.uint8)
    msg = refused(write(tmp_path / "d.npz", x_train=x))
    assert "(20, 3, 8, 3)" in msg and "layout='NCHW' or layout='NHWC'" in msg
    ds = load_dataset(write(tmp_path / "d.npz", x_train=x, layout=layout))
    assert ds.image_shape == image_shape
    assert "'NCHW' or 'NHWC'" in refused(write(tmp_path / "d.npz", x_train=x, layout="CHWN"))


def test_unambiguous_layouts_still_load(tmp_path):
    for shape, image_shape in (((20, 8, 8), (1, 8, 8)), ((20, 3, 8, 8), (3, 8, 8)), ((20, 8, 8, 3), (3, 8, 8))):
        x = np.zeros(shape, np.uint8)
        assert load_dataset(write(tmp_path / "d.npz", x_train=x)).image_shape == image_shape


def test_a_bad_npz_from_the_cli_is_one_line_and_writes_nothing(tmp_path):
    x = np.zeros((20, 8, 8), np.float32)
    x[0, 0, 0] = np.nan
    name = write(tmp_path / "d.npz", x_train=x, x_test=np.zeros((6, 8, 8), np.float32))
    out = subprocess.run([sys.executable, "-m", "rote", "run", "--dataset", name, "--model", "mlp:8", "--n-train", "20",
                          "--epochs", "1", "--out", str(tmp_path / "r")], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "1 non-finite pixel (1 NaN, 0 infinite)" in out.stderr and not (tmp_path / "r").exists()
