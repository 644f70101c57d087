"""Checkpoints: a run killed at a random epoch and resumed gives the record of a run never interrupted;
a group too; a damaged checkpoint is refused in one line; SIGTERM stops a sweep that the next one resumes."""

import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rote.cli import main
from rote.experiments.record import CHECKPOINT, EXAMPLES, HISTORY, RESULT
from rote.experiments.store import Store
from rote.experiments.sweep import parse_sweep
from rote.training.checkpoint import Checkpoint

TIMINGS = {"seconds", "eval_seconds", "seconds_per_epoch", "images_per_second", "train_seconds",
           "seconds_to_memorize"}


def _rote(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "rote", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows(path: Path) -> int:
    try:
        return len(path.read_text().splitlines()) - 1
    except OSError:
        return 0


def _kill_after(p: subprocess.Popen, histories, epoch: int, sig=signal.SIGKILL) -> tuple[str, str]:
    """Send ``sig`` once some history.csv that ``histories()`` lists holds ``epoch`` epochs; (stdout, stderr)."""
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if max((_rows(h) for h in histories()), default=0) >= epoch:
            p.send_signal(sig)
            break
        time.sleep(0.02)
    return p.communicate(timeout=120)


def _record(d: Path):
    """(history rows, result.json, examples.npz) of a run directory, timings left out."""
    with open(d / HISTORY, newline="") as f:
        rows = [{k: v for k, v in r.items() if k not in TIMINGS} for r in csv.DictReader(f)]
    result = {k: v for k, v in json.loads((d / RESULT).read_text()).items() if k not in TIMINGS}
    with np.load(d / EXAMPLES) as z:
        examples = {k: z[k] for k in z.files}
    return rows, result, examples


def _assert_same_record(a: Path, b: Path) -> None:
    ra, rb = _record(a), _record(b)
    assert ra[0] == rb[0]
    assert ra[1] == rb[1]
    assert ra[2].keys() == rb[2].keys() and all(np.array_equal(ra[2][k], rb[2][k]) for k in ra[2])
    assert not (b / CHECKPOINT).exists()


def test_a_run_killed_at_a_random_epoch_resumes_to_the_same_record(tmp_path, mnist):
    epochs = 6
    args = ["run", "--n-train", 300, "--epochs", epochs, "--model", "mlp:32", "--dropout", 0.2, "--stop-at", "none",
            "--eval-every", 1, "--checkpoint-every", 0, "--quiet"]
    ref = _rote(*args, "--out", tmp_path / "ref", cwd=tmp_path)
    cut = _rote(*args, "--out", tmp_path / "cut", cwd=tmp_path)
    kill_at = random.randint(2, epochs - 1)
    _kill_after(cut, lambda: [tmp_path / "cut" / HISTORY], kill_at)
    assert cut.returncode == -signal.SIGKILL, f"killed after epoch {kill_at}"
    assert (tmp_path / "cut" / CHECKPOINT).is_file() and not (tmp_path / "cut" / RESULT).exists()
    out, err = _rote("run", "--resume", tmp_path / "cut", cwd=tmp_path).communicate(timeout=300)
    assert "Traceback" not in err and ref.wait(timeout=300) == 0
    _assert_same_record(tmp_path / "ref", tmp_path / "cut")


GROUP = """\
name: pair
base: {n_train: 300, model: "mlp:32", stop_at: none, eval_every: 1, device: cpu}
cases:
  - {epochs: 6}
  - {epochs: 3, labels: random}
"""


def test_a_group_killed_at_a_random_epoch_resumes_to_the_same_records(tmp_path, mnist):
    (tmp_path / "pair.yaml").write_text(GROUP)
    args = ["sweep", "pair.yaml", "--jobs", 1, "--group", 2, "--checkpoint-every", 0, "--no-estimate"]
    ref = _rote(*args, "--out", "ref", cwd=tmp_path)
    cut = _rote(*args, "--out", "cut", cwd=tmp_path)
    store = Store(tmp_path / "cut")
    kill_at = random.randint(2, 5)  # the shorter run stops after 3: the checkpoint may hold its result
    _kill_after(cut, lambda: [t / HISTORY for t in store.runs.glob(".tmp-*")], kill_at)
    assert cut.returncode == -signal.SIGKILL, f"killed after epoch {kill_at}"
    assert any((t / CHECKPOINT).is_file() for t in store.runs.glob(".tmp-*"))
    out, err = _rote(*args, "--out", "cut", cwd=tmp_path).communicate(timeout=300)
    assert "resume from their checkpoints" in out + err and "Traceback" not in err
    assert ref.wait(timeout=300) == 0
    keys = [c.key() for c in parse_sweep(GROUP).configs]
    assert Store(tmp_path / "ref").done_keys() == store.done_keys() == set(keys)
    for k in keys:
        _assert_same_record(tmp_path / "ref" / "runs" / k, store.runs / k)
    assert not list(store.runs.glob(".tmp-*"))


def test_a_damaged_checkpoint_is_refused_in_one_line_and_the_run_starts_over(tmp_path, mnist, capsys):
    d = tmp_path / "run"
    assert main(["run", "--n-train", "100", "--epochs", "2", "--model", "mlp:16", "--stop-at", "none",
                 "--checkpoint-every", "0", "--quiet", "--out", str(d)]) == 0
    good = _record(d)
    # a checkpoint cut short, as a full disk or a copy would leave it (a killed write leaves none at all)
    blob = Checkpoint(d / "other.pt", ["k"], 0)
    blob.save({"epoch": 1, "payload": torch.zeros(1000)})
    (d / CHECKPOINT).write_bytes((d / "other.pt").read_bytes()[:700])
    lines = []
    assert Checkpoint(d / CHECKPOINT, ["k"]).load(lines.append) is None
    assert len(lines) == 1 and "damaged" in lines[0] and "starts over" in lines[0]
    assert Checkpoint(d / "other.pt", ["another"]).load(lines.append) is None and "other runs" in lines[-1]
    (d / "other.pt").unlink()
    (d / RESULT).unlink()
    capsys.readouterr()
    assert main(["run", "--resume", str(d), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged" in err and "Traceback" not in err
    again = _record(d)
    assert again[0] == good[0] and again[1] == good[1] and not (d / CHECKPOINT).exists()


SLOW = """\
name: slow
base: {n_train: 300, epochs: 25, model: "cnn:4", stop_at: none, collapse_patience: 0, record_examples: false,
       device: cpu}
cases:
  - {labels: permute}
"""


def test_sigterm_stops_a_sweep_with_143_and_the_next_sweep_resumes(tmp_path, mnist):
    (tmp_path / "slow.yaml").write_text(SLOW)
    args = ["sweep", "slow.yaml", "--out", "store", "--jobs", 1, "--no-estimate"]
    store = Store(tmp_path / "store")
    p = _rote(*args, cwd=tmp_path)
    _, err = _kill_after(p, lambda: [t / HISTORY for t in store.runs.glob(".tmp-*")], 2, signal.SIGTERM)
    assert p.returncode == 143, err
    assert "terminated: 0 run(s) finished" in err and "checkpointed" in err and "Traceback" not in err
    temps = list(store.runs.glob(".tmp-*"))
    assert len(temps) == 1 and (temps[0] / CHECKPOINT).is_file()
    kept = _rows(temps[0] / HISTORY)
    assert not (store.root / "failed").exists() and not store.done_keys()
    out, err = _rote(*args, cwd=tmp_path).communicate(timeout=300)
    assert "resume from their checkpoints" in out + err and "Traceback" not in err
    (key,) = store.done_keys()
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(store.runs / key / HISTORY))]
    assert epochs == list(range(1, 26)) and kept >= 2
    assert not list(store.runs.glob(".tmp-*")) and not (store.runs / key / CHECKPOINT).exists()


def test_save_model_keeps_the_final_weights_and_the_api_returns_the_model(tmp_path, mnist):
    import rote
    from rote.data.prepare import prepare

    res = rote.run(n_train=100, epochs=2, model="mlp:16", stop_at="none", record_examples=False, save_model=True,
                   out=tmp_path / "r")
    assert (tmp_path / "r" / "model.pt").is_file() and not (tmp_path / "r" / CHECKPOINT).exists()
    data = prepare(mnist, res.config)
    with torch.no_grad():
        pred = res.model(torch.from_numpy(data.x_test)).argmax(1).numpy()
    assert float((pred == data.y_test).mean()) == res.result["test_acc"]
    assert rote.run(n_train=100, epochs=1, model="mlp:16", out=tmp_path / "s").model is None
