"""Threads from free cores, the oversubscription warning, and the packing choice (no timing here)."""

import os

import pytest

from rote.threads import busy_cores, choose_threads, default_threads, free_cores, oversubscribed, usable_cores


def test_openmp_threads_sleep_when_they_wait():
    import rote  # noqa: F401  (sets it on import, before torch loads OpenMP)

    assert os.environ.get("OMP_WAIT_POLICY", "").upper() in ("PASSIVE", "ACTIVE")


def test_default_threads_are_the_usable_cores_shared_out_whatever_the_load():
    # the default must not follow the load: the thread count can change a convolution's last bits
    assert default_threads(cores=8) == 8 and default_threads(jobs=2, cores=8) == 4
    assert default_threads(jobs=4, cores=2) == 1
    assert default_threads() == usable_cores()


def test_threads_are_the_free_cores_shared_out():
    assert choose_threads(cores=8, busy=0.0) == 8
    assert choose_threads(cores=8, busy=2.2) == 6
    assert choose_threads(jobs=2, cores=8, busy=2.2) == 3
    assert choose_threads(cores=2, busy=2.0) == 1  # never 0: a run on a full machine still runs
    assert choose_threads(jobs=4, cores=2, busy=0.0) == 1
    assert free_cores(cores=4, busy=9.0) == 1


def test_one_warning_line_only_when_oversubscribed():
    assert oversubscribed(2, cores=2, busy=0.1) == ""
    line = oversubscribed(1, cores=2, busy=2.0)
    assert "oversubscribed" in line and "2.0 of its 2" in line and "\n" not in line
    assert "2 x 1 threads" in oversubscribed(1, jobs=2, cores=2, busy=1.0)


def test_the_machine_is_read():
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert 0.0 <= busy_cores(0.05) <= (os.cpu_count() or 1) + 0.5


def test_packing_override_and_trivial_cases(monkeypatch):
    from rote.config import RunConfig
    from rote.experiments import packing

    cfg = RunConfig.from_dict({"model": "mlp:16"})
    monkeypatch.setattr(packing, "measure", lambda *a, **k: pytest.fail("must not measure"))
    monkeypatch.setattr("rote.threads.usable_cores", lambda: 4)
    assert packing.best_jobs(cfg, (1, 28, 28), 10, groups=1) == 1
    monkeypatch.setenv("ROTE_PACKING", "per-core")
    assert packing.best_jobs(cfg, (1, 28, 28), 10, groups=3) == 3
    assert packing.best_jobs(cfg, (1, 28, 28), 10, groups=9) == 4
    monkeypatch.setenv("ROTE_PACKING", "one")
    assert packing.best_jobs(cfg, (1, 28, 28), 10, groups=9) == 1


def test_packing_result_is_cached_per_machine_and_model(monkeypatch, tmp_path):
    from rote.config import RunConfig
    from rote.experiments import packing

    monkeypatch.setenv("ROTE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ROTE_PACKING", raising=False)
    monkeypatch.setattr("rote.threads.usable_cores", lambda: 2)
    cfg = RunConfig.from_dict({"model": "mlp:16"})
    found = packing.Packing(jobs=2, cores=2, one_process=1.0, per_core=1.5, busy=0.0, when="now")
    packing._store(packing.cache_key(cfg, (1, 28, 28), 10, 1, 2), found)
    monkeypatch.setattr(packing, "measure", lambda *a, **k: pytest.fail("must use the cache"))
    assert packing.best_jobs(cfg, (1, 28, 28), 10, groups=5) == 2
    other = RunConfig.from_dict({"model": "mlp:32"})
    monkeypatch.setattr(packing, "measure", lambda *a, **k: packing.Packing(1, 2, 2.0, 1.0, 0.0, "now"))
    assert packing.best_jobs(other, (1, 28, 28), 10, groups=5) == 1


def test_threads_flag_is_not_a_run_setting(capsys):
    from rote.cli import build_parser
    from rote.config import RunConfig

    assert "threads" not in {f for f in RunConfig.__dataclass_fields__}
    args = build_parser().parse_args(["run", "--threads", "1"])
    assert args.threads == 1
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["sweep", "x.yaml", "--threads", "0"])
    assert e.value.code == 2


def test_tiny_dense_models_default_to_one_thread_and_the_rest_to_the_cores():
    from rote.models import dense_step_macs
    from rote.threads import SMALL_STEP_MACS

    mlp16 = dense_step_macs("mlp:16", (1, 28, 28), 10, batch=32)
    assert mlp16 == (784 * 16 + 16 * 10) * 32  # the weights' multiply-adds of one forward step
    assert dense_step_macs("mlp:16", (1, 28, 28), 10, batch=32, members=8) == 8 * mlp16
    assert dense_step_macs("cnn:2", (1, 28, 28), 10, batch=32) is None  # convolutions keep the default
    assert dense_step_macs("seed-cnn", (1, 28, 28), 10, batch=32) is None
    assert default_threads(1, cores=8, step_macs=mlp16) == 1
    assert default_threads(1, cores=8, step_macs=SMALL_STEP_MACS) == 8
    assert default_threads(2, cores=8, step_macs=None) == 4


def test_a_plan_s_step_is_its_largest_group_and_none_with_a_convolution():
    from rote.config import RunConfig
    from rote.experiments.plan import step_macs

    shapes = {"mnist": (10, 60000, (1, 28, 28), 10000)}
    mlps = [RunConfig.from_dict({"model": "mlp:16", "seed": s}) for s in range(4)]
    one = step_macs(mlps[:1], shapes)
    assert step_macs(mlps, shapes) == one  # trained one at a time
    assert step_macs(mlps, shapes, group=32) == 4 * one  # at most the four of them in a group
    assert step_macs(mlps + [RunConfig.from_dict({"model": "cnn:2"})], shapes) is None


def test_the_shell_and_python_choose_threads_alike(tmp_path, mnist, monkeypatch, capsys):
    """threads= or --threads when given, else OMP_NUM_THREADS when set, else rote's rule; rote.run gives the
    caller's count back; a bad OMP_NUM_THREADS is one line."""
    import json

    import torch

    import rote
    from rote.cli import main

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        res = rote.run(n_train=100, epochs=1, model="cnn:2", record_examples=False, device="cpu", threads=1,
                       out=tmp_path / "a")
        assert res.dir and json.loads((tmp_path / "a" / "config.json").read_text())["environment"]["threads"] == 1
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        rote.run(n_train=100, epochs=1, model="cnn:2", record_examples=False, device="cpu", out=tmp_path / "b")
        assert json.loads((tmp_path / "b" / "config.json").read_text())["environment"]["threads"] == 1
        assert main(["run", "--n-train", "100", "--epochs", "1", "--model", "cnn:2", "--quiet",
                     "--out", str(tmp_path / "c")]) == 0
        assert json.loads((tmp_path / "c" / "config.json").read_text())["environment"]["threads"] == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "two")
        capsys.readouterr()
        assert main(["run", "--n-train", "100", "--epochs", "1", "--out", str(tmp_path / "d")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "OMP_NUM_THREADS='two'" in err and not (tmp_path / "d").exists()
        with pytest.raises(Exception, match="threads must be a whole number"):
            rote.run(n_train=100, epochs=1, threads=0, out=tmp_path / "e")
    finally:
        torch.set_num_threads(before)
