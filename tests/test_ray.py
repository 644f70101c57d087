"""The Ray backend on a real local Ray instance: a small sweep, and a worker killed mid-sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray backend is an extra: pip install 'rote-memorization[ray]'")

from rote.experiments.store import Store  # noqa: E402
from rote.experiments.sweep import parse_sweep  # noqa: E402

SWEEP = """\
name: ray-tiny
base: {n_train: 100, epochs: %d, model: "mlp:32", stop_at: none}
grid:
  labels: [true, random]
seeds: 2
"""


def _run(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "rote", "sweep", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, **kw)


def test_ray_sweep_matches_the_local_executor(tmp_path, mnist):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP % 2)
    p = _run([str(f), "--out", str(tmp_path / "ray"), "--backend", "ray", "--no-estimate"], tmp_path)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    p = _run([str(f), "--out", str(tmp_path / "local"), "--jobs", "1", "--no-estimate"], tmp_path)
    assert p.communicate(timeout=300)[0] and p.returncode == 0
    ray_store, local_store = Store(tmp_path / "ray"), Store(tmp_path / "local")
    expected = {c.key() for c in parse_sweep(SWEEP % 2).configs}
    assert ray_store.done_keys() == local_store.done_keys() == expected
    for key in expected:
        a = json.loads((ray_store.record_dir(key) / "result.json").read_text())
        b = json.loads((local_store.record_dir(key) / "result.json").read_text())
        assert a["outcome"] == b["outcome"] and a["epochs"] == b["epochs"]
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["test_acc"] - b["test_acc"]) < 2e-3
        assert (ray_store.record_dir(key) / "history.csv").read_text().count("\n") == 3


def _ray_task_pids():
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::train_remote" in line]


def test_killed_worker_is_retried_and_every_run_lands_once(tmp_path, mnist):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP % 40)  # long enough runs to be caught in flight
    store_dir = tmp_path / "store"
    p = _run([str(f), "--out", str(store_dir), "--backend", "ray", "--no-estimate", "--retries", "3"], tmp_path)
    killed = None
    deadline = time.time() + 180
    while time.time() < deadline and killed is None:
        pids = _ray_task_pids()
        if pids:
            time.sleep(1.0)  # let it get into training
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert killed, "no Ray task process was seen"
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    store = Store(store_dir)
    expected = {c.key() for c in parse_sweep(SWEEP % 40).configs}
    assert store.done_keys() == expected
    assert sorted(x.name for x in store.runs.iterdir()) == sorted(expected)
    assert not (store_dir / "failed").exists()
    for key in expected:
        assert (store.record_dir(key) / "history.csv").read_text().count("\n") == 41


def test_ray_resumes_a_run_from_the_checkpoint_a_killed_sweep_left(tmp_path, mnist):
    from test_resume import GROUP, _kill_after, _record

    f = tmp_path / "pair.yaml"
    f.write_text(GROUP.replace("{epochs: 3, labels: random}", "{epochs: 6, labels: random}"))
    common = [str(f), "--group", "1", "--checkpoint-every", "0", "--no-estimate"]
    ref = _run([*common, "--out", str(tmp_path / "ref"), "--jobs", "1"], tmp_path)
    cut = _run([*common, "--out", str(tmp_path / "cut"), "--jobs", "1"], tmp_path)
    store = Store(tmp_path / "cut")
    _kill_after(cut, lambda: [t / "history.csv" for t in store.runs.glob(".tmp-*")], 3)
    assert any((t / "checkpoint.pt").is_file() for t in store.runs.glob(".tmp-*"))
    out, err = _run([*common, "--out", str(tmp_path / "cut"), "--backend", "ray"], tmp_path).communicate(timeout=600)
    assert "resume from their checkpoints" in out + err, err
    assert ref.wait(timeout=300) == 0
    keys = {c.key() for c in parse_sweep(f.read_text()).configs}
    assert store.done_keys() == keys and not list(store.runs.glob(".tmp-*"))
    for k in keys:  # Ray's workers use another thread count: the same run, up to the last bits
        (ha, ra, _), (hb, rb, _) = _record(tmp_path / "ref" / "runs" / k), _record(store.runs / k)
        assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb] and ra["outcome"] == rb["outcome"]
        assert abs(ra["train_loss"] - rb["train_loss"]) < 1e-4 and not (store.runs / k / "checkpoint.pt").exists()
