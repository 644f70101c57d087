"""The intervention table: runs grouped by recipe across stores, fates read at one budget, tests against the seed's."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from rote.config import RunConfig
from rote.errors import ConfigError
from rote.experiments.run import run
from rote.experiments.store import Store
from rote.reporting.compare import rate_difference
from rote.reporting.intervention import (SEED_RECIPE, arm_rows, fate_at_budget, fates_figure, format_markdown,
                                         load_arms, recipe_changes, recipe_in_words, write)


def _rec(outcome, epochs, memorized_epoch=None, n_fit=900, batch_size=32, seed=0):
    return {"config": {**RunConfig().to_dict(), "seed": seed, "batch_size": batch_size},
            "result": {"outcome": outcome, "epochs": epochs, "memorized_epoch": memorized_epoch, "n_fit": n_fit},
            "dir": "/nonexistent"}


def test_recipe_is_what_differs_from_the_seed_leaving_out_size_and_budget():
    base = RunConfig().to_dict()
    assert recipe_changes(base) == {}
    assert recipe_changes({**base, "n_train": 20000, "epochs": 150, "record_examples": False, "seed": 3}) == {}
    assert recipe_changes({**base, "lr": 1e-4}) == {"lr": 1e-4}
    # momentum belongs to SGD: named even at its default, never for Adam
    assert recipe_changes({**base, "optimizer": "sgd", "lr": 0.01}) == {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
    assert recipe_in_words({}) == SEED_RECIPE
    assert recipe_in_words({"lr": 0.01, "optimizer": "sgd", "momentum": 0.9}) == "optimizer sgd, momentum 0.9, lr 0.01"


def test_fates_are_read_at_the_common_budget_in_epochs_and_steps():
    f = fate_at_budget(_rec("memorized", 40, memorized_epoch=40), budget=150)
    assert (f.fate, f.epoch, f.steps_per_epoch, f.steps) == ("memorised", 40, 29, 40 * 29)  # ceil(900 / 32)
    f = fate_at_budget(_rec("collapsed", 9), budget=150)
    assert (f.fate, f.epoch, f.steps) == ("died", 9, 9 * 29)
    # an event after the budget is censored at the budget, and says so
    f = fate_at_budget(_rec("memorized", 170, memorized_epoch=170), budget=150)
    assert (f.fate, f.epoch) == ("alive", 150) and "170" in f.note
    f = fate_at_budget(_rec("collapsed", 400), budget=150)
    assert (f.fate, f.epoch) == ("alive", 150) and "collapsed" in f.note
    # a run whose own budget was smaller is censored where it stopped
    f = fate_at_budget(_rec("budget-spent", 100), budget=150)
    assert (f.fate, f.epoch) == ("alive", 100) and "100" in f.note
    assert fate_at_budget(_rec("budget-spent", 150), budget=150).note == ""
    f = fate_at_budget(_rec("memorized", 20, memorized_epoch=20, n_fit=18000, batch_size=213), budget=150)
    assert f.steps_per_epoch == 85  # batch 213 gives N = 3,000's steps an epoch at N = 20,000


def _store(root, configs, mnist):
    store = Store(root).create()
    for cfg in configs:
        tmp = store.temp_dir(cfg.key())
        run(cfg, tmp, dataset=mnist, log=lambda s: None)
        store.commit(cfg.key(), tmp)
    return store


@pytest.fixture(scope="module")
def two_stores(mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("intervention")
    common = dict(model="mlp:32", n_train=120, device="cpu", record_examples=False, stop_at=0.3, eval_every=1)
    seeds = (0, 1, 2)
    base = [RunConfig(**common, epochs=6, seed=s) for s in seeds]  # the seed's recipe, a larger budget
    arms = [RunConfig(**common, epochs=4, seed=s, **change) for s in seeds
            for change in ({"lr": 1e-4}, {"optimizer": "sgd", "lr": 0.01})]
    other_n = [RunConfig(**{**common, "n_train": 100}, epochs=4, seed=0)]
    return _store(root / "a", base + other_n, mnist).root, _store(root / "b", arms, mnist).root


def test_arms_from_two_stores_against_the_seeds_recipe(two_stores):
    arms = load_arms(two_stores, n_train=120, budget=4)
    assert [a.label for a in arms] == [SEED_RECIPE, "lr 0.0001", "optimizer sgd, momentum 0.9, lr 0.01"]
    assert all([f.seed for f in a.fates] == [0, 1, 2] for a in arms)  # n_train=100 left out
    rows = arm_rows(arms)
    for a, row in zip(arms, rows):
        assert row["runs"] == 3 and row["n_memorised"] + row["n_died"] + row["n_alive"] == 3
        # every fate read from the run's own record at the budget
        for f in a.fates:
            assert f.epoch <= 4 and f.steps == f.epoch * math.ceil(108 / 32)
    base = arms[0]
    for a, row in zip(arms[1:], rows[1:]):
        d = rate_difference(base.count("memorised"), 3, a.count("memorised"), 3)
        assert row["memorised_p"] == pytest.approx(d.p_value) and row["memorised_difference"] == d.difference
    assert "memorised_p" not in rows[0]
    text = format_markdown(rows, 120, 4, prediction=(100.0, 50.0, 200.0), fates=arms)
    assert text.count("\n| ") == 1 + len(arms) and "the seed's recipe" in text


def test_the_seeds_recipe_runs_are_censored_at_the_common_budget(two_stores):
    store_a = two_stores[0]
    for r in Store(store_a).records():
        if r["config"]["n_train"] != 120:
            continue
        f = fate_at_budget(r, budget=4)
        e = r["result"].get("memorized_epoch")
        if e is not None and e > 4:
            assert f.fate == "alive" and f.epoch == 4
        elif e is not None:
            assert f.fate == "memorised" and f.epoch == e


def test_written_table_csv_and_figure(two_stores, tmp_path):
    text = write(two_stores, 120, 4, out=tmp_path, prediction=(10.0, 5.0, 20.0))
    assert (tmp_path / "intervention.md").read_text() == text
    assert (tmp_path / "fates.png").stat().st_size > 10_000 and (tmp_path / "fates.svg").is_file()
    head = (tmp_path / "intervention.csv").read_text().splitlines()[0].split(",")
    assert head[:3] == ["arm", "runs", "seeds"] and "memorised_p" in head


def test_the_legend_stands_outside_every_axes(two_stores):
    arms = load_arms(two_stores, n_train=120, budget=4)
    fig = fates_figure(arms, 120, 4, prediction=(10.0, 5.0, 20.0))
    fig.canvas.draw()
    leg = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        assert not leg.overlaps(ax.get_window_extent())


def test_user_errors_are_one_line(two_stores, tmp_path):
    with pytest.raises(ConfigError, match="no finished run at n_train=999"):
        load_arms(two_stores, n_train=999, budget=4)
    with pytest.raises(ConfigError, match=r"has seed \d twice"):
        load_arms([two_stores[0], two_stores[0]], n_train=120, budget=4)
    with pytest.raises(ConfigError, match="not a store"):
        load_arms([tmp_path], n_train=120, budget=4)
    for bad in (["--predicted-steps", "5:10:1"], ["--predicted-steps", "x"], ["--budget", "0"]):
        args = [str(two_stores[0]), "--n-train", "120", "--budget", "4", "--out", str(tmp_path / "out"), *bad]
        p = subprocess.run([sys.executable, "-m", "rote.reporting.intervention", *args], capture_output=True, text=True)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("error: "), p.stderr
        assert not list(tmp_path.iterdir())
