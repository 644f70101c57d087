import pytest

from rote.config import RunConfig
from rote.errors import ConfigError


def test_defaults_are_the_seed_experiment():
    c = RunConfig()
    assert (c.dataset, c.n_train, c.labels, c.model, c.init) == ("mnist", 3000, "permute", "seed-cnn", "keras")
    assert (c.optimizer, c.lr, c.batch_size, c.val_split, c.epochs, c.stop_at) == ("adam", 1e-3, 32, 0.1, 1000, 0.997)


def test_overrides_parse_to_field_types():
    c = RunConfig.from_dict({"n-train": "500", "lr": "3e-4", "stop_at": "none", "channels_last": "false"})
    assert c.n_train == 500 and c.lr == 3e-4 and c.stop_at is None and c.channels_last is False


@pytest.mark.parametrize("overrides, words", [
    ({"n_trian": 5}, "did you mean 'n_train'"),
    ({"n_train": "3.5"}, "must be an integer"),
    ({"n_train": True}, "must be an integer"),
    ({"lr": "fast"}, "must be a number"),
    ({"channels_last": "maybe"}, "true or false"),
    ({"val_split": 1.0}, "[0, 1)"),
    ({"labels": "partial:1.5"}, "probability"),
    ({"labels": "shuffle"}, "unknown labels"),
    ({"model": "resnet"}, "unknown model"),
    ({"model": "mlp:abc"}, "hidden sizes"),
    ({"device": "tpu"}, "unknown device"),
    ({"n_train": 1, "val_split": 0.5}, "leaves no training images"),
])
def test_bad_overrides_are_one_line_errors(overrides, words):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(overrides)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_key_changes_with_any_field_and_only_then():
    a, b = RunConfig(), RunConfig.from_dict({"seed": 1})
    assert a.key() == RunConfig().key() and a.key() != b.key()


def test_validation_split_is_keras_last_fraction():
    # Keras: split_at = int(N * (1 - validation_split))
    assert RunConfig().n_val == 300
    assert RunConfig.from_dict({"n_train": 1001}).n_val == 1001 - int(1001 * 0.9)
    assert RunConfig.from_dict({"val_split": 0}).n_val == 0
