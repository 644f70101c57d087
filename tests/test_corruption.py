import numpy as np
import pytest

from rote.config import RunConfig, seeds_for
from rote.data.corruption import corrupt_inputs, corrupt_labels
from rote.data.prepare import prepare, scale
from rote.data.registry import Dataset, get_spec

MNIST_SHAPE = get_spec("mnist").image_shape


def rng(s=0):
    return np.random.default_rng(s)


Y = np.random.default_rng(42).integers(0, 10, size=20000)


def test_permute_is_a_permutation_of_the_whole_array_then_first_n():
    new, changed = corrupt_labels(Y, 3000, "permute", rng(3))
    expect = Y[np.random.default_rng(3).permutation(len(Y))][:3000]  # the seed's expression
    assert np.array_equal(new, expect)
    assert np.array_equal(changed, new != Y[:3000])


def test_permute_keeps_the_marginal_of_the_whole_label_array():
    new, _ = corrupt_labels(Y, len(Y), "permute", rng(0))
    assert np.array_equal(np.bincount(new, minlength=10), np.bincount(Y, minlength=10))


def test_permute_is_independent_of_the_images():
    # agreement with the true label is at the level of chance (sum of squared shares), not above
    new, changed = corrupt_labels(Y, len(Y), "permute", rng(1))
    share = np.bincount(Y) / len(Y)
    assert abs((~changed).mean() - (share ** 2).sum()) < 0.01


@pytest.mark.parametrize("spec", ["permute", "random", "partial:0.5", "flip:0.3", "true"])
def test_labels_reproducible_by_seed_and_differ_across_seeds(spec):
    a, _ = corrupt_labels(Y, 5000, spec, rng(7))
    b, _ = corrupt_labels(Y, 5000, spec, rng(7))
    c, _ = corrupt_labels(Y, 5000, spec, rng(8))
    assert np.array_equal(a, b)
    assert spec == "true" or not np.array_equal(a, c)


def test_random_labels_are_uniform():
    new, changed = corrupt_labels(Y, 20000, "random", rng(0))
    counts = np.bincount(new, minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200
    assert abs(changed.mean() - 0.9) < 0.01


@pytest.mark.parametrize("p", [0.0, 0.2, 0.6, 1.0])
def test_partial_changes_about_0p9_p(p):
    new, changed = corrupt_labels(Y, 20000, f"partial:{p}", rng(0))
    assert abs(changed.mean() - 0.9 * p) < 0.015
    assert np.array_equal(new[~changed], Y[:20000][~changed])


@pytest.mark.parametrize("p", [0.0, 0.25, 1.0])
def test_flip_changes_exactly_round_p_n_each_to_another_class(p):
    new, changed = corrupt_labels(Y, 1001, f"flip:{p}", rng(0))
    assert changed.sum() == round(p * 1001)
    assert (new[changed] != Y[:1001][changed]).all()


def test_true_changes_nothing():
    new, changed = corrupt_labels(Y, 100, "true", rng(0))
    assert np.array_equal(new, Y[:100]) and not changed.any()


def test_input_corruptions():
    x = scale(np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8), MNIST_SHAPE)
    xt = scale(np.random.default_rng(1).integers(0, 256, size=(20, 28, 28), dtype=np.uint8), MNIST_SHAPE)
    a, at = corrupt_inputs(x, xt, "shuffled-pixels", rng(0))
    # one permutation for all: a pixel's column moves the same way in every image, train and test
    flat, aflat = x.reshape(50, -1), a.reshape(50, -1)
    col = np.flatnonzero((aflat[:, :1] == flat).all(axis=0))
    assert len(col) >= 1 and np.array_equal(np.sort(aflat, 1), np.sort(flat, 1))
    perm = [np.flatnonzero((flat == aflat[:, [j]]).all(0))[0] for j in range(784)]
    assert np.array_equal(at.reshape(20, -1), xt.reshape(20, -1)[:, perm])
    b, _ = corrupt_inputs(x, xt, "random-pixels", rng(0))
    assert np.array_equal(np.sort(b.reshape(50, -1), 1), np.sort(flat, 1))  # same pixels per image
    assert not np.array_equal(b, a)
    g, gt = corrupt_inputs(x, xt, "gaussian", rng(0))
    assert g.shape == x.shape and gt.shape == xt.shape and g.dtype == np.float32
    assert abs(g.mean() - x.mean()) < 0.01 and abs(g.std() - x.std()) < 0.01


@pytest.mark.parametrize("spec", ["shuffled-pixels", "random-pixels"])
def test_pixel_permutations_move_a_pixel_with_all_its_channels(spec):
    x = scale(np.random.default_rng(0).integers(0, 256, size=(10, 3, 4, 5), dtype=np.uint8), (3, 4, 5))
    x[:, 1], x[:, 2] = -x[:, 0], 2 * x[:, 0]  # channels tied to each other, pixel by pixel
    a, at = corrupt_inputs(x, x[:4], spec, rng(0))
    for out in (a, at):
        assert np.array_equal(out[:, 1], -out[:, 0]) and np.array_equal(out[:, 2], 2 * out[:, 0])
    assert not np.array_equal(a, x)


def test_scale_is_the_seeds_x_over_255_minus_half_exactly():
    grey = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    expect = grey.astype(np.float32) / np.float32(255) - np.float32(0.5)  # float32 throughout, as Keras
    out = scale(grey, (1, 8, 8))
    assert out.dtype == np.float32 and out.shape == (4, 1, 8, 8)
    assert np.array_equal(out[:, 0], expect)
    assert out.min() == -0.5 and out.max() == 0.5
    colour = np.arange(256 * 3, dtype=np.int64).astype(np.uint8).reshape(16, 4, 4, 3)  # stored (N, H, W, C)
    out = scale(colour, (3, 4, 4))
    assert out.shape == (16, 3, 4, 4)
    assert np.array_equal(out, colour.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255) - np.float32(0.5))
    assert np.array_equal(scale(colour.transpose(0, 3, 1, 2), (3, 4, 4)), out)  # (N, C, H, W) as is
    with pytest.raises(ValueError, match="expected 3x4x5 images"):
        scale(colour, (3, 4, 5))


@pytest.mark.parametrize("image_shape, stored", [
    (MNIST_SHAPE, MNIST_SHAPE[1:]),  # grey: (N, H, W)
    ((3, 6, 5), (6, 5, 3)),  # colour: (N, H, W, C)
])
def test_prepare_takes_the_image_shape_from_the_spec(image_shape, stored):
    r = np.random.default_rng(0)
    x_train = r.integers(0, 256, size=(40, *stored), dtype=np.uint8)
    x_test = r.integers(0, 256, size=(7, *stored), dtype=np.uint8)
    ds = Dataset("synthetic", x_train, r.integers(0, 4, 40), x_test, r.integers(0, 4, 7),
                 source="memory", image_shape=image_shape, classes=4)
    d = prepare(ds, RunConfig.from_dict({"n_train": 30, "labels": "random"}))
    assert d.x_fit.shape == (27, *image_shape) and d.x_val.shape == (3, *image_shape)
    assert d.x_test.shape == (7, *image_shape) and d.classes == 4
    assert np.array_equal(np.concatenate([d.x_fit, d.x_val]), scale(x_train[:30], image_shape))
    assert d.x_fit.flags.c_contiguous and d.labels.max() < 4


def test_prepare_follows_the_seed_protocol(mnist):
    cfg = RunConfig()
    d = prepare(mnist, cfg)
    # x / 255 - 0.5, NCHW float32, the first 3000 images
    assert d.x_fit.dtype == np.float32 and d.x_fit.shape == (2700, 1, 28, 28)
    assert np.array_equal(np.concatenate([d.x_fit, d.x_val]), mnist.x_train[:3000, None].astype(np.float32) / 255 - 0.5)
    assert d.x_fit.min() == -0.5 and d.x_fit.max() == 0.5
    # validation: the LAST 10% of the 3000, before any shuffling
    assert d.x_val.shape == (300, 1, 28, 28)
    assert np.array_equal(d.x_val[:, 0], mnist.x_train[2700:3000].astype(np.float32) / 255 - 0.5)
    assert np.array_equal(np.concatenate([d.y_fit, d.y_val]), d.labels)
    # labels: the whole 60,000-label array permuted, first 3000 kept
    perm = np.random.default_rng(seeds_for(cfg.seed)["labels"]).permutation(60000)
    assert np.array_equal(d.labels, mnist.y_train[perm][:3000])
    assert len(d.labels) == 3000 and 0.8 < d.changed_fraction < 0.95
    # test: all 10,000 with their true labels
    assert np.array_equal(d.y_test, mnist.y_test) and d.x_test.shape == (10000, 1, 28, 28)


def test_prepare_labels_reproducible_and_test_labels_clean(mnist):
    for spec in ["permute", "random", "partial:0.4", "flip:0.4"]:
        cfg = RunConfig.from_dict({"labels": spec, "seed": 5, "n_train": 1000})
        a, b = prepare(mnist, cfg), prepare(mnist, cfg)
        assert np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.y_test, mnist.y_test)
        assert np.array_equal(a.true_labels, mnist.y_train[:1000])
