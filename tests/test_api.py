"""The Python API (rote.run, rote.load, rote.config), the manual's example verbatim, users' models and data,
studies by name, and the CLI's small fixes. Tiny runs only: mlp:16, a few hundred images, an epoch or two."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rote
from rote.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(model="mlp:16", epochs=2, record_examples=False, device="cpu")


def rote_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "rote", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)


def test_import_rote_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, rote; rote.RunConfig; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_validates_when_built():
    cfg = rote.config(n_train=300, labels="partial:0.4", model="mlp:16")
    assert isinstance(cfg, rote.RunConfig) and cfg.labels == "partial:0.4"
    with pytest.raises(ConfigError, match="n_trian"):
        rote.config(n_trian=300)
    with pytest.raises(ConfigError, match="labels"):
        rote.config(labels="partial:2")


def test_run_and_load(tmp_path, mnist):
    pd = pytest.importorskip("pandas")
    r = rote.run(n_train=200, labels="partial:0.4", seed=1, out=tmp_path / "x", **TINY)
    assert r.dir == tmp_path / "x" and r.config.n_train == 200 and r.config.seed == 1
    assert isinstance(r.history, pd.DataFrame) and list(r.history.epoch) == [1, 2]
    assert r.result == json.loads((tmp_path / "x" / "result.json").read_text())
    runs, hist = rote.load(tmp_path / "x")
    assert len(runs) == 1 and runs.key[0] == r.config.key() and runs.n_train[0] == 200
    assert {"key", "epoch", "loss"} <= set(hist.columns) and len(hist) == 2
    # a cfg plus keywords: the keywords win
    r2 = rote.run(r.config, seed=2, out=tmp_path / "y", quiet=True)
    assert r2.config.seed == 2 and r2.config.n_train == 200


def test_load_a_store(tmp_path, mnist):
    pytest.importorskip("pandas")
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nbase: {n_train: 150, epochs: 1, model: 'mlp:16', record_examples: false, "
                     "device: cpu}\ngrid: {labels: [true, random]}\n")
    out = rote_cli("sweep", sweep, "--out", tmp_path / "store", "--jobs", "1", "--no-estimate")
    assert out.returncode == 0, out.stderr
    assert "labels=true" in out.stdout and "labels=random" in out.stdout  # progress names the condition
    runs, hist = rote.load(tmp_path / "store")
    assert sorted(runs.labels) == ["random", "true"] and set(hist.key) == set(runs.key)
    assert list(hist.columns[:2]) == ["key", "epoch"]


def test_run_out_exists_names_the_argument_and_overwrite_replaces(tmp_path, mnist):
    first = rote.run(n_train=100, out=tmp_path / "x", **TINY)
    with pytest.raises(rote.errors.RoteError, match=r"out=.* already exists .*overwrite=True") as e:
        rote.run(n_train=100, seed=1, out=tmp_path / "x", **TINY)
    assert "--out" not in str(e.value)
    assert json.loads((tmp_path / "x" / "config.json").read_text())["config"]["seed"] == 0  # untouched
    second = rote.run(n_train=100, seed=1, out=tmp_path / "x", overwrite=True, **TINY)
    assert second.dir == first.dir and json.loads((tmp_path / "x" / "config.json").read_text())["config"]["seed"] == 1
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the old record is gone, not left aside
    # a failing run leaves the old record where it was; overwrite never deletes what rote did not write
    with pytest.raises(rote.errors.RoteError, match="larger than"):  # found against the data, after set-aside
        rote.run(n_train=70000, seed=2, out=tmp_path / "x", overwrite=True, **TINY)
    assert json.loads((tmp_path / "x" / "config.json").read_text())["config"]["seed"] == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(rote.errors.RoteError, match="not a rote record"):
        rote.run(n_train=100, out=tmp_path / "mine", overwrite=True, **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_sweep_from_a_dict_resumes_and_overwrites(tmp_path, mnist, capsys):
    pytest.importorskip("pandas")
    spec = {"name": "d", "base": {"n_train": 100, "epochs": 1, "model": "mlp:16", "record_examples": False,
                                  "device": "cpu"}, "grid": {"labels": ["true", "random"]}}
    s = rote.sweep(spec, out=tmp_path / "store", jobs=1, progress=True)
    assert (s.dir, len(s.runs), s.already, sorted(s.done), s.failed) == (tmp_path / "store", 2, [], sorted(s.runs), [])
    assert "2/2" in capsys.readouterr().err  # tqdm's bar, as a notebook would show it
    runs, _ = s.load()
    assert sorted(runs.labels) == ["random", "true"]
    again = rote.sweep(spec, out=tmp_path / "store", jobs=1)
    assert (len(again.already), again.done) == (2, [])  # resumed: nothing run twice
    fresh = rote.sweep({**spec, "seeds": [3]}, out=tmp_path / "store", jobs=1, overwrite=True)
    assert (fresh.already, len(fresh.done)) == ([], 2) and sorted(fresh.done) == sorted(fresh.runs)
    assert sorted(fresh.load()[0].seed) == [3, 3]  # the old store's runs are gone
    (tmp_path / "f").write_text("")
    with pytest.raises(rote.errors.RoteError, match="out=") as e:
        rote.sweep(spec, out=tmp_path / "f")
    assert "--out" not in str(e.value)
    with pytest.raises(ConfigError, match="labels"):
        rote.sweep({**spec, "grid": {"labels": ["nonsense"]}}, out=tmp_path / "s2")


def test_manual_python_api_example_runs_verbatim(tmp_path, monkeypatch, mnist):
    pytest.importorskip("pandas")
    text = (ROOT / "docs" / "manual.md").read_text()  # the example lives in the manual
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    real_run = rote.run
    monkeypatch.setattr(rote, "run", lambda *a, **kw: real_run(*a, **{**kw, **TINY}))  # a tiny setting
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/manual.md", "exec"), {})
    assert (tmp_path / "runs" / "api-example" / "result.json").is_file()


# -- your own model, your own data ------------------------------------------------------------

FACTORY = '''
import torch.nn as nn

def tiny(in_shape, classes):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 8), nn.ReLU(), nn.Linear(8, classes))

def wrong(in_shape, classes):
    return "not a module"

not_callable = 3
'''


def _npz(path, layout="nhwc", dtype=np.uint8, n=120, m=40, seed=0):
    rng = np.random.default_rng(seed)
    shape = {"nhw": (8, 8), "nhwc": (8, 8, 3), "nchw": (3, 8, 8)}[layout]
    make = (lambda k: rng.integers(0, 256, (k, *shape), dtype=np.uint8)) if dtype == np.uint8 else \
        (lambda k: rng.standard_normal((k, *shape)).astype(dtype))
    np.savez(path, x_train=make(n), y_train=rng.integers(0, 4, n), x_test=make(m), y_test=rng.integers(0, 4, m))
    return path


def test_own_model_and_npz_from_the_cli(tmp_path):
    (tmp_path / "mymodels.py").write_text(FACTORY)
    data = _npz(tmp_path / "mine.npz")
    out = rote_cli("run", "--model", "mymodels:tiny", "--dataset", f"npz:{data}", "--n-train", 100, "--epochs", 2,
                   "--record-examples", "false", "--out", tmp_path / "r", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["config"]["model"] == "mymodels:tiny" and cfg["config"]["dataset"] == f"npz:{data}"
    import hashlib

    assert cfg["environment"]["dataset_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    res = json.loads((tmp_path / "r" / "result.json").read_text())
    assert res["chance"]["uniform"] == pytest.approx(0.25) and res["parameters"] == 3 * 64 * 8 + 8 + 8 * 4 + 4
    assert "recorded in" in out.stdout and "examples.npz" not in out.stdout and "curves.png" in out.stdout


@pytest.mark.parametrize("model, message", [
    ("nosuchmodule:tiny", "module 'nosuchmodule' cannot be imported"),
    ("mymodels:absent", "has no attribute 'absent'"),
    ("mymodels:not_callable", "not a callable"),
    ("mymodels:wrong", "not a torch.nn.Module"),
])
def test_own_model_errors_are_one_line(tmp_path, model, message, mnist):
    (tmp_path / "mymodels.py").write_text(FACTORY)
    out = rote_cli("run", "--model", model, "--n-train", 100, "--epochs", 1, "--out", tmp_path / "r", cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("layout, dtype", [("nhw", np.uint8), ("nchw", np.uint8), ("nhwc", np.float32)])
def test_npz_layouts_and_scaling(tmp_path, layout, dtype):
    from rote.data.prepare import prepare
    from rote.data.sources import load_dataset

    name = f"npz:{_npz(tmp_path / 'd.npz', layout, dtype)}"
    ds = load_dataset(name)
    assert ds.image_shape == ((1, 8, 8) if layout == "nhw" else (3, 8, 8)) and ds.classes == 4
    data = prepare(ds, rote.config(dataset=name, n_train=100, labels="partial:0.5"))
    assert data.x_fit.shape[1:] == ds.image_shape and data.x_fit.dtype == np.float32
    if dtype == np.uint8:
        assert -0.5 <= data.x_fit.min() and data.x_fit.max() <= 0.5
    else:  # float images are used as they are
        raw = np.load(tmp_path / "d.npz")["x_train"][:90].transpose(0, 3, 1, 2)
        assert np.array_equal(data.x_fit, raw)
    assert 0 < data.changed.mean() < 1  # the same corruption code


def test_npz_errors(tmp_path):
    with pytest.raises(ConfigError, match="no file"):
        rote.config(dataset=f"npz:{tmp_path / 'absent.npz'}")
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((3, 8, 8), np.uint8))
    from rote.data.sources import load_dataset
    from rote.errors import DataError

    with pytest.raises(DataError, match="lacks the arrays y_train, x_test, y_test"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_own_model_and_npz_in_a_sweep(tmp_path):
    (tmp_path / "mymodels.py").write_text(FACTORY)
    _npz(tmp_path / "mine.npz")
    (tmp_path / "s.yaml").write_text("name: own\nbase: {dataset: 'npz:mine.npz', n_train: 100, epochs: 1, "
                                     "record_examples: false, device: cpu}\ngrid: {model: ['mymodels:tiny', 'mlp:16']}\n")
    out = rote_cli("sweep", "s.yaml", "--jobs", "1", "--group", "2", "--no-estimate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "model=mymodels:tiny seed=0" in out.stdout
    assert len(list((tmp_path / "sweeps" / "own" / "runs").glob("*/result.json"))) == 2


# -- studies by name, rote plot RUN_DIR, small faults --------------------------------------------


def test_studies_by_name_outside_a_checkout(tmp_path):
    out = rote_cli("studies", cwd=tmp_path)
    assert out.returncode == 0 and re.search(r"^seed-quick: 6 runs.*\n(  .*\n)*  time: 16 minutes measured", out.stdout,
                                             re.M), out.stdout
    from rote.experiments.studies import list_studies
    from rote.experiments.sweep import load_sweep

    flat = " ".join(out.stdout.split())
    for s in list_studies():  # every study: its whole description and a time line
        assert s["time"] and f"time: {s['time']}" in flat
        assert " ".join(load_sweep(s["path"]).description.split()) in flat
    out = rote_cli("sweep", "seed-quick", "--dry-run", "--no-estimate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "6 runs (1 condition x 6 seeds)" in out.stdout and "sweeps/seed-quick" in out.stdout
    out = rote_cli("sweep", "no-such-study", cwd=tmp_path)
    assert out.returncode == 2 and "shipped studies: capacity" in out.stderr


def test_plot_a_run_dir_and_a_wrong_path(tmp_path, mnist):
    r = rote.run(n_train=100, out=tmp_path / "r", **TINY)
    assert not (r.dir / "curves.png").exists()  # rote.run draws nothing; `rote run` and `rote plot` do
    out = rote_cli("plot", r.dir)
    assert out.returncode == 0 and (r.dir / "curves.png").is_file(), out.stderr
    (tmp_path / "empty").mkdir()
    for wrong in (tmp_path / "empty", tmp_path / "absent"):
        out = rote_cli("plot", wrong)
        assert out.returncode == 2 and "run directory" in out.stderr and "sweep's store" in out.stderr


def test_cli_small_faults(tmp_path, mnist):
    out = rote_cli("run", "--nepochs", 3)
    assert out.returncode == 2 and "rote run --help" in out.stderr and "--epochs" in out.stderr
    out = rote_cli("models")
    assert "mlp:512 " in out.stdout and out.stdout.count("889,834") == 1
    out = rote_cli("run", "--val-split", 0, "--n-train", 100, "--model", "mlp:16", "--epochs", 1, "--no-channels-last",
                   "--record-examples", "false", "--out", tmp_path / "r")
    assert out.returncode == 0, out.stderr
    assert "nan%" not in out.stdout and "1 epoch," in out.stdout
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["config"]["channels_last"] is False
    out = rote_cli("run", "--quiet", "--channels-last", "--n-train", 100, "--model", "mlp:16", "--epochs", 1,
                   "--out", tmp_path / "r2")
    assert "after 1 epoch\n" in out.stdout and "examples.npz, scores.csv, detection.csv" in out.stdout, out.stdout


def test_git_commit_only_of_rotes_own_checkout(tmp_path):
    from rote.experiments import record

    # the suite runs from rote's checkout: the commit is recorded there, and whether the tree was dirty
    assert (ROOT / ".git").exists()
    commit, dirty = record.git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", commit or ""), commit
    assert commit == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert isinstance(dirty, bool)
    # a copy of rote inside someone else's repository records no commit
    import shutil

    repo = tmp_path / "other"
    shutil.copytree(ROOT / "rote", repo / "lib" / "rote", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    code = "import rote; from rote.experiments.record import git_commit; print(rote.__file__, git_commit())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo / "lib")}, cwd=tmp_path, check=True)
    assert out.stdout.split() == [str(repo / "lib" / "rote" / "__init__.py"), "None"]


# -- TensorBoard -----------------------------------------------------------------------------


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _hparams(logdir) -> dict:
    """The hparams plugin's settings of the run logged in logdir, read back from its event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            hp = data.session_start_info.hparams
            return {k: (v.string_value or v.number_value) for k, v in hp.items()}
    return {}


def test_tensorboard_run_and_sweep(tmp_path, mnist):
    pytest.importorskip("tensorboard")
    r = rote.run(n_train=100, out=tmp_path / "r", on_epoch=None, **TINY)  # the API takes on_epoch too
    for seed, run_dir in ((0, "r2"), (1, "r3")):  # two runs into one --tensorboard directory
        out = rote_cli("run", "--n-train", 100, "--model", "mlp:16", "--epochs", 2, "--record-examples", "false",
                       "--seed", seed, "--tensorboard", tmp_path / "tb", "--out", tmp_path / run_dir, "--quiet")
        assert out.returncode == 0, out.stderr
    out = rote_cli("run", "--n-train", 70000, "--tensorboard", tmp_path / "tb", "--out", tmp_path / "r4")
    assert out.returncode == 2 and "larger than" in out.stderr  # refused: no third, empty TensorBoard run
    runs = sorted((tmp_path / "tb").iterdir())
    assert len(runs) == 2, runs  # each run its own folder, not steps appended to the first
    for seed, d in zip((0, 1), sorted(runs, key=lambda d: d.name.endswith("seed1"))):
        assert re.fullmatch(rf"\d{{8}}-\d{{4}}-\d{{2}}_mnist-n100-permute-mlp16-seed{seed}", d.name), d.name
        s = _scalars(d)
        assert [step for step, _ in s["train/loss"]] == [1, 2] and "val/acc" in s
        result = json.loads((tmp_path / f"r{seed + 2}" / "result.json").read_text())
        assert s["result/test_acc"] == [(2, pytest.approx(result["test_acc"]))]
        hp = _hparams(d)
        assert hp["outcome"] == result["outcome"] and hp["seed"] == seed and hp["model"] == "mlp:16"
    (tmp_path / "s.yaml").write_text("name: s\nbase: {n_train: 100, epochs: 2, model: 'mlp:16', "
                                     "record_examples: false, device: cpu}\nseeds: 2\ngrid: {labels: [random]}\n")
    out = rote_cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "store", "--jobs", "1", "--no-estimate",
                   "--tensorboard", tmp_path / "tbs")
    assert out.returncode == 0, out.stderr
    keys = {p.name for p in (tmp_path / "store" / "runs").iterdir()}
    logged = {p.name for p in (tmp_path / "tbs").iterdir()}
    assert len(keys) == 2 and {n.rsplit("_", 1)[1] for n in logged} == {k[:8] for k in keys}
    for name in logged:
        assert name.startswith("mnist-n100-random-mlp16-seed")
        assert [step for step, _ in _scalars(tmp_path / "tbs" / name)["train/acc"]] == [1, 2]
        assert _hparams(tmp_path / "tbs" / name)["labels"] == "random"
    assert r.result


def test_tensorboard_missing_is_one_line(tmp_path):
    code = ("import sys; sys.modules['tensorboard'] = None; from rote.cli import main; "
            f"sys.exit(main(['run', '--tensorboard', {str(tmp_path)!r}, '--epochs', '1']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and "pip install 'rote-memorization[tensorboard]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- Fashion-MNIST, real data ----------------------------------------------------------------


def test_fashion_mnist_end_to_end(tmp_path):
    from rote.data.sources import cache_dir

    if not (Path("/usr/share/datasets/fashion-mnist").is_dir() or (cache_dir() / "fashion-mnist").is_dir()):
        pytest.skip("Fashion-MNIST is not here: apt-get install -y dataset-fashion-mnist (.ci/run does)")
    out = rote_cli("run", "--dataset", "fashion-mnist", "--n-train", 300, "--model", "mlp:16", "--epochs", 2,
                   "--labels", "true", "--record-examples", "false", "--out", tmp_path / "f", "--quiet")
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "f" / "result.json").read_text())
    assert res["test_acc"] > 0.3  # true labels: it learns something real in two epochs
    assert json.loads((tmp_path / "f" / "config.json").read_text())["config"]["dataset"] == "fashion-mnist"


def test_missing_fashion_mnist_names_the_apt_command(tmp_path):
    import shutil

    from rote.data.registry import get_spec
    from rote.data.sources import SystemDirSource, load_dataset
    from rote.errors import DataError

    spec = get_spec("fashion-mnist")
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", sources=[SystemDirSource(spec, tmp_path / "absent", spec.system_package)])
    if shutil.which("apt-get"):
        assert "`apt-get install -y dataset-fashion-mnist`" in str(e.value)


def test_outcomes_read_in_british_spelling_while_files_keep_memorized(tmp_path):
    from rote.training.metrics import outcome_word

    assert outcome_word("memorized") == "memorised" and outcome_word("collapsed") == "collapsed"
    r = rote.RunResult(rote.config(), None, {"outcome": "memorized", "train_acc": 1.0, "test_acc": 0.1, "epochs": 3},
                       tmp_path)
    assert repr(r).startswith("RunResult(memorised:")
