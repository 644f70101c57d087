"""A user's own model, data and recipe: an edited module or file is never reused, settings that cannot apply are
refused, lazy layers work, AdamW, cosine decay with warm-up and a user's optimizer are run settings."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import numpy as np
import pytest

from rote.cli import main
from rote.config import RunConfig, check_identity, identify
from rote.errors import ConfigError
from rote.training.optim import lr_at, make_optimizer

MODELS = textwrap.dedent("""
    from torch import nn

    def mlp_dropout(in_shape, classes):
        c, h, w = in_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, WIDTH), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(WIDTH, classes))

    def lazy(in_shape, classes):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, classes))
""")

OPTIMIZERS = textwrap.dedent("""
    import torch

    def nesterov(params, cfg):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.5, nesterov=True)

    def not_an_optimizer(params, cfg):
        return 3
""")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A directory holding the user's modules, the current directory as for `rote run` there."""
    (tmp_path / "usermodels.py").write_text(MODELS.replace("WIDTH", "64"))
    (tmp_path / "useropt.py").write_text(OPTIMIZERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for m in ("usermodels", "useropt"):
        sys.modules.pop(m, None)


def _edit_width(d, width: int):
    import importlib

    (d / "usermodels.py").write_text(MODELS.replace("WIDTH", str(width)))
    sys.modules.pop("usermodels", None)
    importlib.invalidate_caches()


def test_a_plug_in_models_source_is_part_of_its_key(user_dir):
    a = identify(RunConfig(model="usermodels:mlp_dropout"))
    assert a.model_source is not None and len(a.model_source) == 16
    _edit_width(user_dir, 32)
    b = identify(RunConfig(model="usermodels:mlp_dropout"))
    assert b.model_source != a.model_source and b.key() != a.key()
    # rote's own models and datasets have no such field: their keys are what they were
    assert identify(RunConfig()).key() == RunConfig().key()
    with pytest.raises(ConfigError, match="changed since these settings were made"):
        check_identity(a)
    check_identity(b)


def test_a_store_of_an_older_model_version_is_refused_in_one_line(user_dir, mnist, capsys):
    (user_dir / "mine.yaml").write_text('name: mine\nbase: {model: "usermodels:mlp_dropout", n_train: 100, '
                                        'epochs: 1, device: cpu, record_examples: false}\nseeds: 1\n')
    assert main(["sweep", "mine.yaml", "--out", "sw", "--no-estimate", "--jobs", "1"]) == 0  # seeds only
    config = json.loads(next((user_dir / "sw" / "runs").glob("*/config.json")).read_text())
    assert config["environment"]["model_parameters"] == 784 * 64 + 64 + 64 * 10 + 10
    _edit_width(user_dir, 32)
    capsys.readouterr()
    assert main(["sweep", "mine.yaml", "--out", "sw", "--no-estimate", "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another version of the model 'usermodels:mlp_dropout'" in err
    assert len(list((user_dir / "sw" / "runs").iterdir())) == 1  # nothing reused, nothing added


def test_an_edited_npz_is_another_dataset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"

    def save(n):
        np.savez(path, x_train=rng.integers(0, 255, (n, 8, 8), dtype=np.uint8), y_train=np.arange(n) % 3,
                 x_test=rng.integers(0, 255, (9, 8, 8), dtype=np.uint8), y_test=np.arange(9) % 3)
    save(30)
    a = identify(RunConfig(dataset=f"npz:{path}", n_train=20, model="mlp:8"))
    save(31)
    b = identify(RunConfig(dataset=f"npz:{path}", n_train=20, model="mlp:8"))
    assert a.data_source and a.data_source != b.data_source and a.key() != b.key()


def test_dropout_for_a_plug_in_model_is_refused_not_recorded(user_dir, capsys):
    with pytest.raises(ConfigError, match="cannot apply to 'usermodels:mlp_dropout'"):
        RunConfig(model="usermodels:mlp_dropout", dropout=0.5).validate()
    assert main(["run", "--model", "usermodels:mlp_dropout", "--dropout", "0.5", "--out", "r"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (user_dir / "r").exists()


def test_a_model_with_lazy_layers_is_counted_and_trained(user_dir, mnist):
    import rote

    res = rote.run(model="usermodels:lazy", n_train=100, epochs=1, record_examples=False, device="cpu",
                   out=user_dir / "r")
    assert res.result["parameters"] == 784 * 16 + 16 + 16 * 10 + 10


def test_warm_up_and_cosine_decay():
    cfg = RunConfig(lr=1.0, schedule="cosine", warmup_epochs=2, epochs=10)
    lrs = [lr_at(cfg, e) for e in range(1, 11)]
    assert lrs[:3] == [0.5, 1.0, 1.0]  # linear warm-up, then the cosine starts at lr
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # decays
    assert lr_at(RunConfig(lr=1.0, warmup_epochs=4), 2) == 0.5 and lr_at(RunConfig(lr=1.0, warmup_epochs=4), 5) == 1
    with pytest.raises(ConfigError):
        RunConfig(warmup_epochs=-1).validate()
    assert RunConfig(warmup_epochs=0).key() == RunConfig().key()  # a later setting, neutral at its default


def test_adamw_and_a_users_optimizer(user_dir):
    import torch

    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = make_optimizer(RunConfig(optimizer="adamw", weight_decay=0.1, lr=0.01), p)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.1
    cfg = identify(RunConfig(optimizer="useropt:nesterov", lr=0.05))
    assert cfg.optimizer_source and cfg.key() != RunConfig(lr=0.05).key()
    opt = make_optimizer(cfg, p)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["lr"] == 0.05
    with pytest.raises(ConfigError, match="no attribute 'missing'"):
        RunConfig(optimizer="useropt:missing").validate()
    with pytest.raises(ConfigError, match="not a torch.optim.Optimizer"):
        make_optimizer(RunConfig(optimizer="useropt:not_an_optimizer"), p)


def test_a_users_optimizer_trains_a_run_and_is_recorded(user_dir, mnist, capsys):
    assert main(["run", "--optimizer", "useropt:nesterov", "--model", "mlp:16", "--n-train", "100", "--epochs", "1",
                 "--lr", "0.01", "--quiet", "--out", "r"]) == 0
    cfg = json.loads((user_dir / "r" / "config.json").read_text())["config"]
    assert cfg["optimizer"] == "useropt:nesterov" and len(cfg["optimizer_source"]) == 16
    assert main(["run", "--optimizer", "useropt:not_an_optimizer", "--model", "mlp:16", "--n-train", "100",
                 "--out", "s"]) == 2
    assert "not a torch.optim.Optimizer" in capsys.readouterr().err and not (user_dir / "s").exists()


def test_index_has_numeric_label_columns_and_a_fixed_budget_is_known(tmp_path, mnist):
    from rote.experiments.record import label_columns

    assert label_columns("partial:0.4") == ("partial", 0.4) and label_columns("true") == ("true", 0.0)
    assert label_columns("permute") == ("permute", 1.0) and label_columns("flip:0.2") == ("flip", 0.2)
    import rote

    rote.sweep({"name": "x", "base": {"model": "mlp:8", "n_train": 100, "epochs": 1, "device": "cpu",
                                      "record_examples": False},
                "grid": {"labels": ["true", "partial:0.4"]}, "seeds": 1}, out=tmp_path / "s")
    import csv

    rows = list(csv.DictReader(open(tmp_path / "s" / "index.csv")))
    assert sorted((r["label_kind"], float(r["label_p"])) for r in rows) == [("partial", 0.4), ("true", 0.0)]


def test_dry_run_knows_the_epochs_when_nothing_stops_a_run_early(tmp_path, mnist, capsys):
    f = tmp_path / "fixed.yaml"
    f.write_text('name: fixed\nbase: {model: "mlp:8", n_train: 100, epochs: 7, stop_at: none, collapse_patience: 0, '
                 'device: cpu}\nseeds: 2\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epochs: fixed: no stop rule" in out and "unknown" not in out


def test_tensorboard_logs_a_store_finished_without_it(tmp_path, mnist, capsys):
    pytest.importorskip("tensorboard")
    f = tmp_path / "s.yaml"
    f.write_text('name: s\nbase: {model: "mlp:8", n_train: 100, epochs: 1, device: cpu, record_examples: false}\n'
                 'seeds: 2\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "st"), "--no-estimate"]) == 0
    assert main(["sweep", str(f), "--out", str(tmp_path / "st"), "--no-estimate", "--tensorboard",
                 str(tmp_path / "tb")]) == 0
    assert "2 finished earlier, logged now" in capsys.readouterr().out
    logs = sorted((tmp_path / "tb").iterdir())
    assert len(logs) == 2 and all(any(d.glob("events.out.tfevents.*")) for d in logs)


def test_a_sweep_keeps_the_weights_when_asked(tmp_path, mnist):
    import rote
    from rote.experiments.run import load_model

    spec = {"name": "w", "base": {"model": "mlp:8", "n_train": 100, "epochs": 1, "device": "cpu",
                                  "record_examples": False}, "seeds": 2, "save_model": True}
    rote.sweep(spec, out=tmp_path / "w")
    runs = sorted((tmp_path / "w" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "model.pt").is_file() for r in runs)
    assert load_model(runs[0]) is not None
    rote.sweep({**spec, "save_model": False}, out=tmp_path / "n")
    assert not any((r / "model.pt").exists() for r in (tmp_path / "n" / "runs").iterdir())
    with pytest.raises(ConfigError, match="'save_model' must be true or false"):
        rote.sweep({**spec, "save_model": "yes"}, out=tmp_path / "x")
