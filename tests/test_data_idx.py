"""IDX and npz readers, on small synthetic files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from rote.data.idx import GZIP_MAGIC, as_images, as_labels, gunzip, parse_idx
from rote.data.npz import read_npz
from rote.errors import DataError


def read_idx(path: Path) -> np.ndarray:
    """What the loader does with a file, less the checksum: gunzip by magic bytes, then parse."""
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        data = gunzip(data, str(path))
    return parse_idx(data, str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.tobytes()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([3, 0, 9, 1, 7], dtype=np.uint8)


def test_raw_round_trip(tmp_path, images):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    out = as_images(read_idx(path), str(path))
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    np.testing.assert_array_equal(out, images)


def test_gzip_round_trip_detected_by_magic_not_name(tmp_path, images):
    # Named without .gz on purpose: compression is recognised by content.
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(path), images)


def test_labels_come_back_int64(tmp_path, labels):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    out = as_labels(read_idx(path), str(path))
    assert out.dtype == np.int64 and out.shape == (5,)
    assert out.tolist() == [3, 0, 9, 1, 7]


def test_generic_read_keeps_shape(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.arange(24).reshape(2, 3, 4)))
    assert read_idx(path).shape == (2, 3, 4)


def test_bad_magic(tmp_path, labels):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02" + idx_bytes(labels)[2:])
    with pytest.raises(DataError, match="not an IDX file") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_unsupported_dtype(tmp_path, labels):
    data = bytearray(idx_bytes(labels))
    data[2] = 0x0D  # float32
    path = tmp_path / "floats"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="dtype 0x0d"):
        read_idx(path)


def test_truncated_payload(tmp_path, images):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(images)[:-10])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_header(tmp_path):
    path = tmp_path / "header"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x05")
    with pytest.raises(DataError, match="truncated inside its IDX header"):
        read_idx(path)


def test_trailing_bytes(tmp_path, labels):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(labels) + b"junk")
    with pytest.raises(DataError, match="4 trailing bytes"):
        read_idx(path)


def test_corrupt_gzip(tmp_path, labels):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels))[:-6])
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)


def test_images_reader_rejects_labels_file(tmp_path, labels):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match=r"expected \(N, H, W\)"):
        as_images(read_idx(path), str(path))


def test_parse_idx_messages_are_one_line(labels):
    with pytest.raises(DataError) as err:
        parse_idx(idx_bytes(labels)[:-1], "somewhere")
    assert "\n" not in str(err.value)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good_arrays(images, labels):
    return dict(x_train=images, y_train=labels, x_test=images[:2], y_test=labels[:2])


def test_npz_good(tmp_path, images, labels):
    path = _npz(tmp_path / "mnist.npz", **_good_arrays(images, labels))
    x_train, y_train, x_test, y_test = read_npz(path)
    assert x_train.dtype == np.uint8 and x_train.shape == (5, 28, 28)
    assert y_train.dtype == np.int64 and y_train.tolist() == [3, 0, 9, 1, 7]
    assert x_test.shape == (2, 28, 28) and y_test.shape == (2,)


def test_npz_missing_key(tmp_path, images, labels):
    arrays = _good_arrays(images, labels)
    del arrays["y_test"]
    path = _npz(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match="lacks the arrays y_test"):
        read_npz(path)


def test_npz_bad_shape(tmp_path, images, labels):
    arrays = _good_arrays(images, labels)
    arrays["x_train"] = images.reshape(5, 784)
    path = _npz(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=r"x_train.*shape \(5, 784\)"):
        read_npz(path)


def test_npz_bad_dtype(tmp_path, images, labels):
    arrays = _good_arrays(images, labels)
    arrays["x_test"] = images[:2].astype(np.float32)
    path = _npz(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match="float32"):
        read_npz(path)


def test_npz_length_mismatch(tmp_path, images, labels):
    arrays = _good_arrays(images, labels)
    arrays["y_train"] = labels[:4]
    path = _npz(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match="5 x_train images but 4 y_train labels"):
        read_npz(path)


def test_npz_not_a_zip(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=r"not an .npz \(zip\) file"):
        read_npz(path)
