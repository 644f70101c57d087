"""The Python API (rote.run, rote.load, rote.config), the README's example verbatim, users' models and data,
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


def test_readme_python_api_example_runs_verbatim(tmp_path, monkeypatch, mnist):
    pytest.importorskip("pandas")
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    real_run = rote.run
    monkeypatch.setattr(rote, "run", lambda *a, **kw: real_run(*a, **{**kw, **TINY}))  # a tiny setting
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "api-example" / "result.json").is_file()
