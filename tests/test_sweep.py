"""Sweep files, expansion, and a store that survives SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rote.errors import ConfigError
from rote.experiments.store import Store
from rote.experiments.sweep import load_sweep, parse_sweep

TINY = """\
name: tiny
base:
  n_train: 100
  epochs: 3
  model: "mlp:32"
  stop_at: none
grid:
  labels: [true, random, "partial:0.5"]
seeds: 2
"""


def test_expansion_is_grid_times_seeds():
    s = parse_sweep(TINY)
    assert len(s.configs) == 6 and s.seeds == [0, 1]
    # seed-major: every condition's first seed before any second seed (a half-done sweep is balanced)
    assert [(c.labels, c.seed) for c in s.configs] == [("true", 0), ("random", 0), ("partial:0.5", 0),
                                                      ("true", 1), ("random", 1), ("partial:0.5", 1)]
    assert all(c.n_train == 100 and c.model == "mlp:32" and c.stop_at is None for c in s.configs)
    assert len({c.key() for c in s.configs}) == 6
    assert parse_sweep(TINY.replace("seeds: 2", "seeds: [3, 9]")).seeds == [3, 9]


@pytest.mark.parametrize("text, where", [
    (TINY.replace("  epochs: 3", "  epohcs: 3"), "line 4: field 'epohcs': unknown setting"),
    (TINY.replace("  epochs: 3", "  epochs: three"), "line 4: field 'epochs': setting 'epochs' must be an integer"),
    (TINY.replace('[true, random, "partial:0.5"]', "[]"), "line 8: grid field 'labels' needs a non-empty list"),
    (TINY.replace("random,", "randon,"), "line 8: field 'labels': unknown labels 'randon'"),
    (TINY.replace("seeds: 2", "seeds: 0"), "line 9: 'seeds' must be a positive count"),
    (TINY + "extra: 1\n", "line 10: unknown key 'extra'"),
    ("name: x\nbase: {}\ngrid: {}\n", "'grid' must map"),
    (TINY.replace("grid:\n", "grid:\n  seed: [1, 2]\n"), "line 8: put seeds under the top-level 'seeds' key"),
    ("grid: [1, 2", "not valid YAML"),
])
def test_bad_sweep_files_name_the_line_and_field(text, where):
    with pytest.raises(ConfigError) as e:
        parse_sweep(text, "s.yaml")
    assert where in str(e.value) and str(e.value).startswith("s.yaml")


def _laughs(indent: str, levels: int = 9) -> list[str]:
    """A billion-laughs bomb as YAML list items: each level names the one before nine times."""
    lines = [f"{indent}- &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{indent}- &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return lines


HOSTILE = {
    # aliases that expand to 9^9 values wherever they stand: refused from the event stream, never built
    "laughs in description": "\n".join(["grid: {labels: [true]}", "description:", *_laughs("  ")]),
    "laughs in base": "\n".join(["grid: {labels: [true]}", "base:", "  x:", *_laughs("    ")]),
    "laughs in cases": "\n".join(["cases:", "  - labels:", *_laughs("    ")]),
    "laughs in grid": "\n".join(["grid:", "  labels:", *_laughs("    ")]),
    "laughs in seeds": "\n".join(["grid: {labels: [true]}", "seeds:", *_laughs("  ")]),
    "nesting 10,000 deep (flow)": "grid: " + "[" * 10_000 + "]" * 10_000,
    "nesting 40 deep (block)": "grid:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)) + "  " * 41 + "x\n",
    "nesting 200 deep (flow mappings)": "grid: " + "{a: " * 200 + "1" + "}" * 200,
    "a grid of 200,000 values written out": "grid:\n  lr: [" + ", ".join(["0.001"] * 200_000) + "]\n",
    "a grid of 25,000 values": "grid:\n  lr: [" + ", ".join(f"{i + 1}e-5" for i in range(25_000)) + "]\n",
    "a file over the size bound": "# " + "x" * (2 << 20) + "\ngrid: {labels: [true]}\n",
    "a product of two grids of 5,000": "grid:\n  lr: [" + ", ".join(f"{i + 1}e-5" for i in range(5_000))
                                        + "]\n  momentum: [" + ", ".join(f"0.{i:05d}" for i in range(5_000)) + "]\n",
    "a million seeds over a few values": "grid: {labels: [true, random]}\nseeds: 999999999999",
    "a value of 500,000 characters": "grid:\n  labels: [" + "x" * 500_000 + "]\n",
    "a name of 500,000 characters": "name: " + "/" * 500_000 + "\ngrid: {labels: [true]}\n",
    "a setting named by a list": "base: {[1, 2]: 3}\ngrid: {labels: [true]}\n",
    "a setting named by a number": "base: {7: 3}\ngrid: {labels: [true]}\n",
    "an unknown key of 100,000 characters": "k" * 100_000 + ": 1\ngrid: {labels: [true]}\n",
    "expect_epochs a huge list": "grid: {labels: [true]}\nexpect_epochs: [" + "1, " * 5_000 + "1]\n",
}


@pytest.mark.parametrize("what", HOSTILE)
def test_hostile_sweep_files_are_refused_in_one_short_line(what, tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_sweep(HOSTILE[what], "hostile.yaml")
    msg = str(e.value)
    assert msg.startswith("hostile.yaml") and "\n" not in msg and len(msg) <= 400, msg
    f = tmp_path / "hostile.yaml"
    f.write_text(HOSTILE[what])
    with pytest.raises(ConfigError):
        load_sweep(f)


def test_runs_are_counted_before_values_are_checked():
    # 5,000 x 5,000 bad learning rates: the count refuses it, not the first bad value
    text = "grid:\n  lr: [" + ", ".join(["-1"] * 5_000) + "]\n  seed_like: [" + ", ".join(["1"] * 5_000) + "]\n"
    with pytest.raises(ConfigError, match="25,000,000 runs"):
        parse_sweep(text)


def test_missing_sweep_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read sweep file"):
        load_sweep(tmp_path / "nope.yaml")


def test_shipped_studies_parse():
    studies = sorted((Path(__file__).resolve().parents[1] / "rote" / "studies").glob("*.yaml"))
    assert {p.stem for p in studies} >= {"seed", "zhang-mnist", "corruption", "capacity"}
    for p in studies:
        assert len(load_sweep(p).configs) > 0


def _sweep(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "rote", "sweep", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_sweep_then_resume_runs_everything_exactly_once(tmp_path, mnist):
    f = tmp_path / "tiny.yaml"
    f.write_text(TINY)
    store_dir = tmp_path / "store"
    args = [str(f), "--out", str(store_dir), "--jobs", "1", "--no-estimate"]
    p = _sweep(args, tmp_path)
    store = Store(store_dir)
    deadline = time.time() + 240
    while time.time() < deadline and len(store.done_keys()) < 2:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    first = {k: (store.record_dir(k) / "result.json").read_bytes() for k in store.done_keys()}
    assert 2 <= len(first) < 6, "the kill should land mid-sweep"

    p = _sweep(args, tmp_path)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert f"{len(first)} already in" in out
    expected = {c.key() for c in parse_sweep(TINY).configs}
    assert store.done_keys() == expected
    assert sorted(p.name for p in store.runs.iterdir()) == sorted(expected)  # no temporaries, no duplicates
    for k, blob in first.items():  # nothing finished before the kill was redone
        assert (store.record_dir(k) / "result.json").read_bytes() == blob
    import csv
    rows = list(csv.DictReader(open(store_dir / "index.csv")))
    assert sorted(r["key"] for r in rows) == sorted(expected)
    for r in rows:
        res = json.loads((store.record_dir(r["key"]) / "result.json").read_text())
        assert float(r["test_acc"]) == res["test_acc"] and r["labels"] == json.loads(
            (store.record_dir(r["key"]) / "config.json").read_text())["config"]["labels"]

    # changing a field adds runs and never reuses the old ones
    f.write_text(TINY.replace("epochs: 3", "epochs: 2").replace("seeds: 2", "seeds: 1"))
    p = _sweep(args, tmp_path)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "0 already in" in out and "3 to run" in out
    assert len(store.done_keys()) == 9
    assert {json.loads((store.record_dir(k) / "config.json").read_text())["config"]["epochs"]
            for k in store.done_keys()} == {2, 3}


def test_estimate_uses_finished_runs(tmp_path, mnist):
    from rote.experiments import estimate as timing
    from rote.experiments import execute

    store_dir = tmp_path / "store"
    first = parse_sweep(TINY.replace("seeds: 2", "seeds: 1"))
    plan = execute.plan(first, store_dir)
    execute.start_store(plan)
    execute.run_local(plan, 1)
    more = parse_sweep(TINY.replace("seeds: 2", "seeds: [7]"))
    est = timing.estimate(execute.plan(more, store_dir))
    assert est.epochs_from == "from 3 finished runs" and est.low is not None
    # these runs use every epoch (stop_at none): the high end is the bound
    assert est.low <= est.high == pytest.approx(est.bound)
