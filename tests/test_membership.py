"""Runs on a subset of the training part and Feldman & Zhang's memorisation scores from K of them.

Tiny on purpose (mlp:16, a few hundred images, a few epochs): the CPU is shared.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from rote.cli import main
from rote.config import RunConfig, seeds_for
from rote.data.prepare import prepare
from rote.errors import ConfigError
from rote.experiments import execute
from rote.experiments.record import MEMBERSHIP, MEMBERSHIP_ARRAYS, read_membership, write_membership
from rote.experiments.run import run
from rote.experiments.grouping import group_key
from rote.experiments.sweep import load_sweep, parse_sweep
from rote.reporting.results import load, memorization_rows

TINY = dict(model="mlp:16", record_examples=False, device="cpu", stop_at=None)


def test_seeds_for_appends_the_subset_stream_without_shifting_the_others():
    # the six streams as they were before "subset" was added: SeedSequence children are positional
    old = ("labels", "inputs", "init", "order", "augment", "chance")
    for seed in (0, 7, 123456):
        children = np.random.SeedSequence(seed).spawn(len(old))
        before = {n: int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for n, c in zip(old, children)}
        now = seeds_for(seed)
        assert {n: now[n] for n in old} == before
        assert now["subset"] not in before.values()


def test_subset_and_label_seed_leave_existing_keys_alone():
    assert RunConfig().key() == "2c3abc16ce48ad3b"  # the key before these settings existed
    assert RunConfig.from_dict({"subset": "none", "label_seed": "none"}).key() == RunConfig().key()
    keys = {RunConfig().key(), RunConfig.from_dict({"subset": 0.7}).key(),
            RunConfig.from_dict({"label_seed": 0}).key()}
    assert len(keys) == 3


@pytest.mark.parametrize("bad", [{"subset": 0}, {"subset": 1}, {"subset": 1.5}, {"subset": 0.001, "n_train": 100},
                                 {"subset": 0.999, "n_train": 100}, {"label_seed": -1}])
def test_bad_subset_or_label_seed_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        RunConfig.from_dict(bad)


def test_subset_size_reproducible_by_seed_and_labels_fixed_by_label_seed(mnist):
    base = dict(n_train=200, labels="flip:0.2", subset=0.7, label_seed=0)  # training part 180, subset 126
    a, a2, b = (prepare(mnist, RunConfig.from_dict({**base, "seed": s})) for s in (0, 0, 1))
    n_part = 200 - RunConfig.from_dict(base).n_val
    for d in (a, b):
        assert len(d.y_fit) == len(d.fit_index) == len(d.x_fit) == round(0.7 * n_part) == 126
        assert len(d.out_index) == len(d.y_out) == len(d.x_out) == n_part - 126
        assert np.array_equal(np.sort(np.concatenate([d.fit_index, d.out_index])), np.arange(n_part))
        assert np.all(np.diff(d.fit_index) > 0) and np.all(np.diff(d.out_index) > 0)
        assert np.array_equal(d.y_fit, d.labels[d.fit_index]) and np.array_equal(d.y_out, d.labels[d.out_index])
        whole = prepare(mnist, RunConfig.from_dict({k: v for k, v in base.items() if k != "subset"}))
        assert np.array_equal(d.x_part(), whole.x_fit)  # the subset is a choice of rows, nothing else
        assert np.array_equal(d.x_fit, whole.x_fit[d.fit_index])
        assert len(d.y_val) == 20  # the validation part is untouched
    assert np.array_equal(a.fit_index, a2.fit_index)  # reproducible by seed
    assert not np.array_equal(a.fit_index, b.fit_index)  # another seed, another subset ...
    assert np.array_equal(a.labels, b.labels) and a.changed.sum() > 0  # ... and the same labels
    # label_seed none is today's behaviour: the labels follow the seed
    free = [prepare(mnist, RunConfig.from_dict({**base, "label_seed": None, "seed": s})) for s in (0, 1)]
    assert not np.array_equal(free[0].labels, free[1].labels)
    assert np.array_equal(free[0].labels, a.labels)  # label_seed 0 draws what seed 0 draws


def test_a_run_on_a_subset_writes_membership(mnist, tmp_path):
    cfg = RunConfig.from_dict({**TINY, "n_train": 150, "labels": "flip:0.2", "label_seed": 0, "subset": 0.6,
                               "epochs": 2, "seed": 3})
    run_dir, result = run(cfg, tmp_path / "run", dataset=mnist, log=lambda s: None)
    m = read_membership(run_dir)
    n_part = 150 - cfg.n_val
    assert set(m) == set(MEMBERSHIP_ARRAYS)
    assert all(v.shape == (n_part,) for v in m.values())
    assert np.array_equal(m["index"], np.arange(n_part))
    assert m["in_subset"].dtype == bool and m["in_subset"].sum() == cfg.n_subset == result["n_fit"]
    assert result["n_out"] == n_part - cfg.n_subset
    labels = np.load(run_dir / "labels.npy")
    assert not labels["validation"][:n_part].any() and labels["validation"][n_part:].all()
    for k in ("label", "true_label", "changed"):
        assert np.array_equal(m[k], labels[k][:n_part])
    assert np.array_equal(m["changed"], m["label"] != m["true_label"])
    d = prepare(mnist, cfg)
    assert np.array_equal(np.flatnonzero(m["in_subset"]), d.fit_index)
    # the final model in eval mode on its subset is the run's final training accuracy
    assert m["correct"][m["in_subset"]].mean() == pytest.approx(result["train_acc"])
    # the per-example record of a run on a subset names the images it trained on
    rec_dir, _ = run(RunConfig.from_dict({**TINY, "n_train": 100, "subset": 0.5, "epochs": 1,
                                          "record_examples": True}), tmp_path / "examples", dataset=mnist,
                     log=lambda s: None)
    with np.load(rec_dir / "examples.npz") as z:
        assert np.array_equal(z["index"], np.flatnonzero(read_membership(rec_dir)["in_subset"]))
    assert (rec_dir / "scores.csv").is_file()
    # a run on the whole training part writes none
    plain, _ = run(RunConfig.from_dict({**TINY, "n_train": 100, "epochs": 1}), tmp_path / "plain", dataset=mnist,
                   log=lambda s: None)
    assert not (plain / MEMBERSHIP).exists()


E2E = """\
name: mem-tiny
base: {n_train: 120, labels: "flip:0.2", label_seed: 0, subset: 0.5, model: "mlp:16", epochs: 5, stop_at: none,
       record_examples: false, device: cpu}
grid:
  labels: ["flip:0.2"]
seeds: 8
"""


def test_table_writes_memorization_csv_from_eight_runs_on_subsets(mnist, tmp_path, capsys):
    root = tmp_path / "store"
    plan = execute.plan(parse_sweep(E2E), root)
    counts = execute.run_sweep(plan, jobs=1, group=8, log=lambda s: None)  # the 8 runs as one stacked model
    assert counts["done"] == 8 and counts["failed"] == 0
    runs = sorted((root / "runs").iterdir())
    assert all(read_membership(d) is not None for d in runs)
    assert '"group_size": 8' in (runs[0] / "config.json").read_text()

    assert main(["table", str(root)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO((root / "memorization.csv").read_text())))
    n_part = 120 - RunConfig.from_dict({"n_train": 120}).n_val
    assert len(rows) == n_part and [int(r["index"]) for r in rows] == list(range(n_part))
    assert all(int(r["n_in"]) + int(r["n_out"]) == 8 for r in rows)
    assert sum(int(r["n_in"]) for r in rows) == 8 * round(0.5 * n_part)
    for r in rows:
        mem, se = float(r["mem"]), float(r["se"])
        if int(r["n_in"]) and int(r["n_out"]):
            assert -1 <= mem <= 1 and se >= 0
        else:
            assert np.isnan(mem)
    assert (r["changed"] == "True") == (r["label"] != r["true_label"])
    assert "mean mem" in out and "from 8 models" in out and "changed labels" in out

    # runs that do not share their labels give no estimates, and say why
    m = read_membership(runs[0])
    m["label"] = (m["label"] + 1) % 10
    write_membership(runs[0] / MEMBERSHIP, m)
    rows, summaries = memorization_rows(load(root))
    assert rows == [] and "label_seed" in summaries[0].note


def test_shipped_memorization_study_parses():
    path = Path(__file__).resolve().parents[1] / "rote" / "studies" / "memorization.yaml"
    cfgs = load_sweep(path).configs
    assert len(cfgs) == 32 and sorted(c.seed for c in cfgs) == list(range(32))
    c = cfgs[0]
    assert (c.n_train, c.labels, c.label_seed, c.subset, c.model, c.epochs, c.stop_at) == (
        3000, "flip:0.1", 0, 0.7, "mlp:512", 60, 0.997)
    assert len({group_key(c) for c in cfgs}) == 1  # groupable: one stacked model on a GPU (--group)
    assert len({c.key() for c in cfgs}) == 32
    assert "# Time: 16 minutes measured" in path.read_text()  # as measured (docs/studies.md)
