"""The capacity curve on a tiny real store: memorised bits per run, per N and per model, checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rote.config import RunConfig
from rote.experiments.run import run
from rote.experiments.store import Store
from rote.reporting.capacity import (bits_from_loss, capacity_points, capacity_rows, format_markdown, main,
                                     still_rising, t_interval)
from rote.reporting.figures import plot_sweep
from rote.reporting.results import load

SWEEP = """\
name: tiny-capacity
base:
  model: "mlp:8"
  labels: random
  val_split: 0
  epochs: 2
  stop_at: none
  eval_every: 1
  record_examples: false
  device: cpu
grid:
  n_train: [200, 300]
seeds: 2
"""


@pytest.fixture(scope="module")
def store(mnist, tmp_path_factory) -> Store:
    from rote.experiments.sweep import parse_sweep

    root = tmp_path_factory.mktemp("capacity") / "tiny"
    store = Store(root).create()
    (root / "sweep.yaml").write_text(SWEEP)
    for cfg in parse_sweep(SWEEP).configs:
        tmp = store.temp_dir(cfg.key())
        run(cfg, tmp, dataset=mnist, log=lambda s: None)
        store.commit(cfg.key(), tmp)
    store.write_index()
    return store


def _by_hand(store: Store) -> dict:
    """(n_train, seed) -> (bits from result.json, [bits at each epoch from history.csv], parameters)."""
    out = {}
    for d in sorted(Path(store.root, "runs").iterdir()):
        cfg = json.loads((d / "config.json").read_text())
        cfg = cfg.get("config", cfg)
        res = json.loads((d / "result.json").read_text())
        lines = (d / "history.csv").read_text().splitlines()
        head = lines[0].split(",")
        col = head.index("train_loss_full")
        curve = [cfg["n_train"] * (math.log2(10) - float(row.split(",")[col]) / math.log(2)) for row in lines[1:]]
        bits = cfg["n_train"] * math.log2(10) - cfg["n_train"] * res["train_loss"] / math.log(2)
        out[(cfg["n_train"], cfg["seed"])] = (bits, curve, res["parameters"])
    return out


def test_bits_per_run_and_per_n_match_the_files(store):
    hand = _by_hand(store)
    assert len(hand) == 4
    pts = capacity_points(load(store))
    assert list(pts) == ["mlp:8"]
    assert [p["n"] for p in pts["mlp:8"]] == [200, 300]
    for p in pts["mlp:8"]:
        assert [b["seed"] for b in p["runs"]] == [0, 1]
        for b in p["runs"]:
            bits, curve, params = hand[(p["n"], b["seed"])]
            assert b["bits"] == pytest.approx(bits, rel=1e-9)
            assert b["bits_curve"] == pytest.approx(curve, rel=1e-9) and b["epochs_curve"] == [1.0, 2.0]
            assert b["parameters"] == params == 795 * 8 + 10
            assert b["ideal_bits"] == pytest.approx(p["n"] * math.log2(10))
        two = [hand[(p["n"], s)][0] for s in (0, 1)]
        mean = sum(two) / 2
        half = 12.706 * abs(two[0] - two[1]) / math.sqrt(2) / math.sqrt(2)  # t(0.975, 1) * s / sqrt(n)
        assert p["mean"] == pytest.approx(mean) and p["low"] == pytest.approx(mean - half, rel=1e-4)
        assert p["high"] == pytest.approx(mean + half, rel=1e-4)


def test_capacity_row_is_the_plateau_point(store):
    hand = _by_hand(store)
    (row,) = capacity_rows(load(store))
    means = {n: (hand[(n, 0)][0] + hand[(n, 1)][0]) / 2 for n in (200, 300)}
    best = max(means, key=means.get)
    assert row["plateau_n"] == best and row["capacity_bits"] == pytest.approx(means[best])
    assert row["parameters"] == 6370 and row["seeds"] == 2 and row["sizes"] == 2
    assert row["bits_per_parameter"] == pytest.approx(means[best] / 6370)
    # two epochs of a tiny model are far from converged: every number is a lower bound and says so
    assert row["lower_bound"] and "rising in epochs" in row["why_lower"]
    assert row["vs_morris"] == pytest.approx(row["bits_per_parameter"] / 3.6)
    text = format_markdown([row])
    assert "| mlp:8 | 6,370 |" in text and f">= {means[best]:,.0f}" in text and "lower bound" in text


def test_figure_is_registered_and_drawn(store, tmp_path):
    notes = []
    paths = plot_sweep(store, tmp_path / "figs", log=notes.append)
    png = tmp_path / "figs" / "capacity_bits.png"
    assert png in paths and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_the_table_command_prints_or_says_what_is_missing(store, tmp_path, capsys):
    assert main([str(store.root)]) == 0
    assert "| mlp:8 |" in capsys.readouterr().out
    empty = Store(tmp_path / "empty").create()
    assert main([str(empty.root)]) == 2
    assert "no finished runs on uniform random labels" in capsys.readouterr().err


def test_bits_from_loss_and_the_rising_rule_by_hand():
    # a model that predicts the given label with certainty holds log2 10 bits per label, the uniform one none
    assert bits_from_loss(100, 0.0) == pytest.approx(100 * math.log2(10))
    assert bits_from_loss(100, math.log(10)) == pytest.approx(0.0, abs=1e-9)
    epochs = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    # 80% of 100 is epoch 80: 995 -> 1000 is 0.5% of 1000, flat; 980 -> 1000 is 2%, rising
    assert not still_rising(epochs, [100, 200, 400, 600, 800, 900, 950, 995, 998, 1000])
    assert still_rising(epochs, [100, 200, 400, 600, 800, 900, 950, 980, 990, 1000])
    assert still_rising(epochs, [0, -1, -2, -3, -3, -3, -3, -3, -3, -3])  # learned nothing: no plateau to claim
    assert still_rising([5], [10.0])
    m, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert t_interval([4.0]) == (4.0, None, None)


class _Data:
    """The part of a SweepData that the capacity functions read: conditions with runs, and each run's history."""

    def __init__(self, runs):
        self.conditions = [type("C", (), {"runs": runs})()]
        self._h = {id(r): r.pop("history") for r in runs}

    def history(self, r):
        return self._h[id(r)]


def _rec(model, n, seed, loss, curve_losses):
    return {"config": {"labels": "random", "model": model, "seed": seed},
            "result": {"train_loss": loss, "n_fit": n, "parameters": 1000, "chance": {"uniform": 0.1}},
            "history": {"epoch": list(range(10, 10 * len(curve_losses) + 1, 10)), "train_loss_full": curve_losses}}


def test_plateau_and_lower_bounds_by_hand():
    flat = [2.0, 1.0, 0.9, 0.9, 0.9]  # no change over the last 20% of epochs
    # model a: 1,000 labels at 0.9 nats, 2,000 at 1.8 nats: fewer bits at the larger N, a converged plateau at 1,000
    # model b: the larger N holds more (2.0 nats on 1,000, 1.0 on 2,000): still rising in N, a lower bound
    runs = [_rec("a", 1000, s, 0.9, flat) for s in (0, 1)] + [_rec("a", 2000, s, 1.8, flat[:4] + [1.8])
                                                               for s in (0, 1)]
    runs += [_rec("b", 1000, 0, 2.0, [2.0] * 5), _rec("b", 2000, 0, 1.0, [2.0, 1.5, 1.2, 1.1, 1.0])]
    rows = {r["model"]: r for r in capacity_rows(_Data(runs))}
    a, b = rows["a"], rows["b"]
    bits_a = 1000 * (math.log2(10) - 0.9 / math.log(2))
    assert a["plateau_n"] == 1000 and a["capacity_bits"] == pytest.approx(bits_a)
    assert a["bits_low"] == pytest.approx(bits_a) and a["bits_per_parameter"] == pytest.approx(bits_a / 1000)
    assert not a["lower_bound"] and a["why_lower"] == ""
    assert b["plateau_n"] == 2000 and b["lower_bound"] and b["why_lower"] == "still rising in epochs, still rising in N"
    assert b["capacity_bits"] == pytest.approx(2000 * (math.log2(10) - 1.0 / math.log(2))) and b["bits_low"] is None
    text = format_markdown([a, b])
    assert f"| a | 1,000 | 1,000 | 2 | {bits_a:,.0f} ({bits_a:,.0f} to {bits_a:,.0f}) | {bits_a / 1000:.3f}" in text
    assert "| b | 1,000 | 2,000 | 1 | >= " in text
