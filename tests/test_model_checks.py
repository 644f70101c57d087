"""A model is checked before a run writes or allocates anything: its name, its size against the memory
there is, and one forward pass on a batch of the data's real shape."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import rote
from rote.errors import ConfigError
from rote.models import checks, check_model

FACTORY = '''
import torch
import torch.nn as nn

def good(in_shape, classes):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 8), nn.ReLU(), nn.Linear(8, classes))

def wrong_out(in_shape, classes):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 13))

def wrong_in(in_shape, classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(100, classes))

class Log(nn.Module):
    def __init__(self, width, classes):
        super().__init__()
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return torch.log(self.fc(x.flatten(1)) - 1e3)

def nan_out(in_shape, classes):
    c, h, w = in_shape
    return Log(c * h * w, classes)
'''


def rote_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "rote", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.fixture
def place(tmp_path):
    """A directory with the factories and a small 10-class npz of 8x8 grey images."""
    (tmp_path / "mymodels.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
             y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8),
             y_test=np.arange(10) % 10)
    return tmp_path


def run_cli(place, model):
    return rote_cli("run", "--model", model, "--dataset", "npz:d.npz", "--n-train", 40, "--epochs", 1,
                    "--record-examples", "false", "--out", place / "r", "--quiet", cwd=place)


@pytest.mark.parametrize("model, message", [
    ("mymodels:wrong_out", "maps a batch of shape (2, 1, 8, 8) to (2, 13); it must give (2, 10)"),
    ("mymodels:wrong_in", "fails on a batch of this data's 1x8x8 images"),
    ("mymodels:nan_out", "gives 20 non-finite logits (NaN or infinity) of 20"),
    ("mlp:", "has nothing after ':'; write mlp:512"),
    # (64 + 1) n + (n + 1) n + (n + 1) 10 parameters for n = 99,999,999, 16 bytes each: too big for any machine,
    # refused before a byte of it is allocated
    ("mlp:99999999x99999999", "has 10,000,007,399,999,935 parameters; training with adam needs at least 160,000,118.4 GB"),
])
def test_a_bad_model_is_one_line_before_anything_is_written(place, model, message):
    out = run_cli(place, model)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr, out.stderr
    assert not (place / "r").exists()


def test_a_wrong_input_shape_names_pytorchs_reason(place):
    out = run_cli(place, "mymodels:wrong_in")
    assert "mat1 and mat2 shapes cannot be multiplied" in out.stderr


def test_a_good_factory_still_runs(place):
    out = run_cli(place, "mymodels:good")
    assert out.returncode == 0, out.stderr
    assert (place / "r" / "result.json").is_file()


@pytest.mark.parametrize("name", ["mlp:", "cnn:", "seed-cnn:"])
def test_an_empty_argument_is_an_error_not_the_default(name):
    with pytest.raises(ConfigError, match="has nothing after ':'"):
        rote.config(model=name)
    rote.config(model=name[:-1])  # the bare family is still its default


def test_registered_models_see_the_datas_shape():
    with pytest.raises(ConfigError, match="seed-cnn' fails on a batch of this data's 1x8x8 images"):
        check_model("seed-cnn", in_shape=(1, 8, 8), classes=10)
    assert check_model("seed-cnn", in_shape=(1, 28, 28), classes=10) == 889_834


def test_training_memory_is_weights_gradients_and_optimiser_state():
    assert checks.training_bytes(1000, "adam") == 1000 * 4 * 4
    assert checks.training_bytes(1000, "adam-keras1") == 1000 * 4 * 4
    assert checks.training_bytes(1000, "sgd", momentum=0.9) == 1000 * 4 * 3
    assert checks.training_bytes(1000, "sgd", momentum=0.0) == 1000 * 4 * 2
    assert checks.training_bytes(1000, "adam", models=3) == 3 * 1000 * 4 * 4


def test_too_big_for_the_memory_there_is_refused_without_allocating(monkeypatch):
    # a 24 GB machine; mlp:5000000 on MNIST has 3,975,000,010 parameters: 15.9 GB of weights, 63.6 GB to train
    monkeypatch.setattr(checks, "available_memory", lambda device: (24 * 10 ** 9, "this machine has"))
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError) as err:
        check_model("mlp:5000000", in_shape=(1, 28, 28), classes=10, device=cpu)
    msg = str(err.value)
    assert "3,975,000,010 parameters" in msg and "63.6 GB" in msg and "24.0 GB available" in msg
    with pytest.raises(ConfigError, match="1,272.0 GB"):
        check_model("mlp:99999999", in_shape=(1, 28, 28), classes=10, device=cpu)
    assert check_model("mlp:512", in_shape=(1, 28, 28), classes=10, device=cpu) == 407_050
    # a group of R models needs R times as much: 1,000,000,000 parameters with plain SGD is 8 GB each
    checks.check_fits("big", 10 ** 9, cpu, "sgd", 0.0, models=3)
    with pytest.raises(ConfigError, match="training 4 of them side by side"):
        checks.check_fits("big", 10 ** 9, cpu, "sgd", 0.0, models=4)
