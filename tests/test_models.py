import math

import pytest
import torch
from torch import nn

from rote.errors import ConfigError
from rote.models import available_models, check_model_name, count_parameters, create_model

MNIST = dict(in_shape=(1, 28, 28), classes=10)


def test_seed_cnn_has_the_seeds_889834_parameters_and_layer_shapes():
    m = create_model("seed-cnn", **MNIST)
    assert count_parameters(m) == 889_834
    shapes = []
    x = torch.zeros(2, 1, 28, 28)
    for layer in m:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.Linear)):
            shapes.append(tuple(x.shape[1:]))
    # same conv, valid conv, pool, same conv, valid conv, pool, dense 512, dense 10
    assert shapes == [(32, 28, 28), (32, 26, 26), (32, 13, 13), (64, 13, 13), (64, 11, 11), (64, 5, 5), (512,), (10,)]
    convs = [l for l in m if isinstance(l, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 and [c.padding for c in convs] == [(1, 1), (0, 0)] * 2


@pytest.mark.parametrize("name, params", [
    ("mlp:512", 784 * 512 + 512 + 512 * 10 + 10),
    ("mlp:512x512x512", 784 * 512 + 512 + 2 * (512 * 512 + 512) + 512 * 10 + 10),
    ("cnn:4", (1 * 9 * 4 + 4) + (4 * 9 * 8 + 8) + (8 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + 32 * 10 + 10),
])
def test_parameter_counts(name, params):
    assert count_parameters(create_model(name, **MNIST)) == params


@pytest.mark.parametrize("name", ["seed-cnn", "mlp:512", "mlp:64x64", "cnn:8"])
def test_every_model_maps_images_to_logits(name):
    m = create_model(name, **MNIST, dropout=0.5)
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", ["seed-cnn", "mlp:64", "cnn:4"])
def test_models_take_the_datasets_shape_and_classes(name):
    m = create_model(name, in_shape=(3, 32, 32), classes=100)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_every_registered_family_builds():
    for family in available_models():
        assert count_parameters(create_model(family, **MNIST)) > 0


def test_keras_init_is_glorot_uniform_with_zero_biases():
    m = create_model("seed-cnn", **MNIST, init="keras", generator=torch.Generator().manual_seed(0))
    for layer in m:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            w = layer.weight
            receptive = w[0, 0].numel() if w.dim() > 2 else 1
            fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
            limit = math.sqrt(6 / (fan_in + fan_out))
            assert w.abs().max() <= limit
            assert w.abs().max() > 0.95 * limit  # the bound is reached, not a narrower law
            assert abs(w.std().item() - limit / math.sqrt(3)) < 0.1 * limit / math.sqrt(3)
            assert torch.count_nonzero(layer.bias) == 0


def test_torch_init_keeps_pytorch_defaults():
    m = create_model("seed-cnn", **MNIST, init="torch", generator=torch.Generator().manual_seed(0))
    dense = m[11]
    bound = 1 / math.sqrt(1600)
    assert torch.count_nonzero(dense.bias) > 0 and dense.bias.abs().max() <= bound
    assert dense.weight.abs().max() <= bound  # kaiming_uniform(a=sqrt(5)) has bound 1/sqrt(fan_in)


def test_init_reproducible_from_generator():
    a = create_model("seed-cnn", **MNIST, generator=torch.Generator().manual_seed(3))
    b = create_model("seed-cnn", **MNIST, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError):
        create_model("vgg", **MNIST)
    with pytest.raises(ConfigError):
        check_model_name("mlp:0")
