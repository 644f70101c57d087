"""The time estimate of a sweep: calibrated on the real training step, a range from the epochs finished
runs took (or the sweep file's expect_epochs), and the bound apart."""

from __future__ import annotations

import pytest

from rote.errors import ConfigError
from rote.experiments import estimate as timing
from rote.experiments import execute
from rote.experiments.sweep import parse_sweep

SMALL = """\
name: small
base:
  n_train: 100
  epochs: 2
  batch_size: 10
  model: "mlp:16"
  stop_at: none
  record_examples: false
  device: cpu
grid:
  labels: [permute]
seeds: 2
"""


@pytest.fixture(autouse=True)
def fresh_cache():
    timing._speeds.clear()
    yield
    timing._speeds.clear()


@pytest.mark.parametrize("preprocess, shape", [("none", (3, 32, 32)), ("zhang", (3, 28, 28))])
def test_calibration_builds_the_real_input_shape(tmp_path, monkeypatch, preprocess, shape):
    """A CIFAR-10 run is timed on 3x32x32 images (28x28 after Zhang's crop), with no data files needed."""
    import rote.models
    from rote.training.members import OneModel as Members  # one model per group here (group=1)

    built, seen = [], []
    real_create, real_forward = rote.models.create_model, Members.forward

    def create(name, **kw):
        built.append((name, kw["in_shape"], kw["classes"]))
        return real_create(name, **kw)

    def forward(self, x):
        seen.append(tuple(x.shape))
        return real_forward(self, x)

    monkeypatch.setattr(rote.models, "create_model", create)
    monkeypatch.setattr(Members, "forward", forward)
    sweep = parse_sweep(SMALL.replace("n_train: 100", f"n_train: 100\n  dataset: cifar10\n  preprocess: {preprocess}"))
    est = timing.estimate(execute.plan(sweep, tmp_path / "store"), jobs=1, group=1)
    assert built and all(b == ("mlp:16", shape, 10) for b in built)
    assert (1, 10, *shape) in seen  # a training batch: (members, batch, C, H, W)
    assert est.low is None and est.bound > 0 and est.epochs_from == "unknown"


def test_groups_are_timed_at_their_size(tmp_path, monkeypatch):
    sizes = []
    real = timing.calibrate
    monkeypatch.setattr(timing, "calibrate", lambda cfg, shape, classes, k=1: sizes.append(k) or real(
        cfg, shape, classes, k))
    sweep = parse_sweep(SMALL.replace("seeds: 2", "seeds: 12"))
    timing.estimate(execute.plan(sweep, tmp_path / "store"), jobs=1, group=10)
    assert sizes == [timing.CALIBRATE_MAX_GROUP, 2]  # a group of 10 timed at 8 (and scaled), then one of 2


def test_prior_gives_an_ordered_range_and_the_bound_apart(tmp_path):
    from rote.cli import estimate_lines

    sweep = parse_sweep(SMALL.replace("epochs: 2", "epochs: 10") + "expect_epochs: 3\n")
    assert sweep.expect_epochs == 3
    est = timing.estimate(execute.plan(sweep, tmp_path / "store"), jobs=1, group=1)
    assert est.epochs_from == "expect_epochs: 3 in the sweep file"
    assert 0 < est.low <= est.high <= est.bound
    assert est.high < est.bound  # 1.5 x 3 epochs is well inside the budget of 10
    lines = estimate_lines(est)
    assert lines[0].startswith("estimate: ") and "epochs: expect_epochs: 3" in lines[0] and "speed: timed" in lines[0]
    assert lines[1].startswith("upper bound: ") and "whole epoch budget" in lines[1]


def test_unknown_epochs_print_only_the_bound(tmp_path):
    from rote.cli import estimate_lines

    est = timing.estimate(execute.plan(parse_sweep(SMALL), tmp_path / "store"), jobs=1, group=1)
    assert est.low is est.high is None and est.epochs_from == "unknown"
    first, bound = estimate_lines(est)
    assert "unknown" in first and bound.startswith("upper bound: ")


def test_finished_runs_epochs_are_used(tmp_path, mnist):
    store_dir = tmp_path / "store"
    first = execute.plan(parse_sweep(SMALL), store_dir)  # 2 real runs of mlp:16, 2 epochs each
    execute.start_store(first)
    execute.run_local(first, 1)
    first.store.unlock()
    assert len(first.store.done_keys()) == 2
    # a larger budget for new seeds: the same kind of run, so the finished runs' 2 epochs are the typical
    more = parse_sweep(SMALL.replace("epochs: 2", "epochs: 20").replace("seeds: 2", "seeds: [5, 6]")
                       + "expect_epochs: 15\n")
    est = timing.estimate(execute.plan(more, store_dir), jobs=1, group=1)
    assert est.epochs_from == "from 2 finished runs"  # not the prior
    assert 0 < est.low <= est.high < est.bound / 3


def test_jobs_on_a_cpu_give_no_speed_up(tmp_path):
    sweep = parse_sweep(SMALL + "expect_epochs: 2\n")
    p = execute.plan(sweep, tmp_path / "store")
    one = timing.estimate(p, jobs=1, group=1)
    two = timing.estimate(p, jobs=2, group=1)  # the same cached timing
    assert two.low == one.low and two.bound == one.bound and "no speed-up" in two.note


@pytest.mark.parametrize("value", ["0", "-3", "many", "true", "2.5", "[3]"])
def test_bad_expect_epochs_is_a_one_line_error(value):
    with pytest.raises(ConfigError) as e:
        parse_sweep(SMALL + f"expect_epochs: {value}\n")
    msg = str(e.value)
    assert "\n" not in msg and "expect_epochs" in msg and "line 13" in msg


def test_expect_epochs_is_optional():
    assert parse_sweep(SMALL).expect_epochs is None
    assert parse_sweep(SMALL + "expect_epochs: 40\n").expect_epochs == 40
