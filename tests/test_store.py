"""The store against what goes wrong: two drivers, Ctrl-C, damaged or copied records, dead workers, bad values.

Every user error is one line on stderr and exit code 2, and leaves nothing half-written.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rote.cli import main
from rote.config import RunConfig
from rote.errors import ConfigError
from rote.experiments import execute
from rote.experiments.store import Store, check_record
from rote.experiments.sweep import parse_sweep

SMALL = """\
name: small
base: {n_train: 100, epochs: 1, model: "mlp:16", stop_at: none, record_examples: false, device: cpu}
grid:
  labels: [true, random, "partial:0.5"]
seeds: 2
"""
# one quick run, then long ones: a signal sent while a long one trains finds exactly one run finished
LONG = """\
name: long
base: {n_train: 100, epochs: 5000, model: "mlp:16", stop_at: none, collapse_patience: 0, record_examples: false,
       device: cpu}
cases:
  - {epochs: 1}
  - {labels: random}
  - {labels: true}
  - {labels: "partial:0.5"}
"""


def run_main(capsys, *args):
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err, err


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, mnist):
    """A finished store of SMALL's six runs, made once; tests work on copies."""
    root = tmp_path_factory.mktemp("small") / "store"
    plan = execute.plan(parse_sweep(SMALL), root)
    counts = execute.run_sweep(plan, jobs=1, log=lambda s: None)
    assert counts["done"] == 6 and counts["failed"] == 0
    return root


def copy_store(src: Path, tmp_path: Path) -> Store:
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return Store(dst)


def _popen(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "rote", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _training_temps(store: Store, min_rows: int = 2) -> list[Path]:
    """Temporary record directories whose run has written at least ``min_rows`` epochs."""
    found = []
    for t in store.runs.glob(".tmp-*"):
        try:
            if len((t / "history.csv").read_text().splitlines()) > min_rows:
                found.append(t)
        except OSError:
            pass
    return found


def _wait(cond, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


# -- 1. two drivers on one store ---------------------------------------------------------


def test_second_driver_is_refused_and_leaves_the_first_drivers_run_alone(small_store, tmp_path, capsys):
    store = copy_store(small_store, tmp_path)
    first = Store(store.root)
    first.lock()  # a first driver, mid-sweep, with a run in flight in a temporary directory of its own
    key = next(iter(store.done_keys()))
    shutil.rmtree(store.record_dir(key))
    mine = store.runs / f".tmp-{key}-{os.getpid()}"
    shutil.copytree(small_store / "runs" / key, mine)
    f = tmp_path / "small.yaml"
    f.write_text(SMALL)
    try:
        code, _, err = run_main(capsys, "sweep", f, "--out", store.root, "--jobs", "1", "--no-estimate")
    finally:
        first.unlock()
    assert code == 2
    one_line(err, f"store {store.root} is in use by another rote sweep (pid {os.getpid()}); wait for it or use "
                  f"another --out")
    assert mine.is_dir() and not store.record_dir(key).exists()

    # temporaries are removed only when their process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = store.runs / f".tmp-{key}-{dead.pid}"
    gone.mkdir()
    assert store.clean_stale() == 1 and not gone.exists() and mine.is_dir()


def test_a_record_with_a_file_missing_is_never_published(small_store, tmp_path):
    store = copy_store(small_store, tmp_path)
    key = next(iter(store.done_keys()))
    src = store.record_dir(key)
    for missing in ("config.json", "history.csv", "labels.npy", "result.json"):
        tmp = store.runs / f".tmp-{key}-{os.getpid()}"
        shutil.copytree(src, tmp)
        (tmp / missing).unlink()
        shutil.rmtree(src, ignore_errors=True)
        store.land({"key": key, "status": "done"}, tmp)
        assert not store.record_dir(key).exists() and not tmp.exists()
        failed = json.loads((store.root / "failed" / f"{key}.json").read_text())
        assert failed["status"] == "failed" and missing in failed["error"]
        shutil.copytree(small_store / "runs" / key, src)
    assert check_record(src) is None


# -- 2. Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_the_sweep_at_once_and_records_no_failure(tmp_path, mnist, jobs):
    f = tmp_path / "long.yaml"
    f.write_text(LONG)
    store = Store(tmp_path / "store")
    p = _popen(["sweep", f, "--out", store.root, "--jobs", jobs, "--no-estimate"], tmp_path)
    try:
        assert _wait(lambda: len(store.done_keys(warn=False)) == 1 and _training_temps(store)), "no run started"
        p.send_signal(signal.SIGINT)
        t0 = time.time()
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert time.time() - t0 < 20
    assert p.returncode == 130, err
    assert "interrupted: 1 run(s) finished" in err and "Traceback" not in err
    assert not (store.root / "failed").exists()
    assert store.done_keys() == {parse_sweep(LONG).configs[0].key()}
    # the runs in flight keep a checkpoint for the next sweep to resume; nothing else of them is left
    store.clean_stale()
    temps = list(store.runs.glob(".tmp-*"))
    assert temps and all((t / "checkpoint.pt").is_file() for t in temps)


# -- 3. damaged, foreign or copied records --------------------------------------------------


def test_bad_records_are_named_left_out_and_redone(small_store, tmp_path, capsys):
    store = copy_store(small_store, tmp_path)
    keys = sorted(store.done_keys())
    assert len(keys) == 6
    a, b, c, d, e, g = (store.record_dir(k) for k in keys)
    (a / "result.json").write_text((a / "result.json").read_text()[:40])  # truncated
    (b / "config.json").unlink()
    (c / "history.csv").write_bytes((c / "history.csv").read_bytes() + b"\xff\xfe,\x80\n")  # not UTF-8
    (d / "result.json").unlink()
    shutil.copy(g / "result.json", e / "result.json")  # another run's result dropped in
    shutil.copytree(g, store.runs / "copy-of-a-run")  # a copy under another name: not an extra seed
    (store.runs / "notes").mkdir()
    (store.runs / "notes" / "todo.txt").write_text("foreign")
    (store.root / "sweep.yaml").write_bytes(b"name: small\n# \xff\xfe\n")  # not UTF-8

    assert store.done_keys() == {g.name}
    warned = capsys.readouterr().err.strip().splitlines()
    assert len(warned) == 7 and all(w.startswith("rote: warning: record runs/") for w in warned)
    assert [r["key"] for r in store.records()] == [g.name]

    code, out, err = run_main(capsys, "table", store.root)
    assert code == 0 and "Traceback" not in err, err
    code, _, err = run_main(capsys, "report", store.root)
    assert code == 0 and "Traceback" not in err, err

    # the next sweep moves them aside and redoes the five damaged runs (and never counts the copy)
    f = tmp_path / "small.yaml"
    f.write_text(SMALL)
    code, out, err = run_main(capsys, "sweep", f, "--out", store.root, "--jobs", "1", "--no-estimate")
    assert code == 0, err
    assert "1 already in" in out and "5 to run" in out
    assert store.done_keys() == set(keys)
    assert sorted(p.name for p in store.runs.iterdir()) == keys
    assert len(list((store.root / "quarantine").iterdir())) == 7
    assert len((store.root / "index.csv").read_text().strip().splitlines()) == 7
    code, _, err = run_main(capsys, "table", store.root)
    assert code == 0 and err == ""


# -- 3b. damaged records of any kind: every file parses within bounds, every field keeps its schema -------


def _set(field, value):
    def damage(d: Path):
        res = json.loads((d / "result.json").read_text())
        res[field] = value
        (d / "result.json").write_text(json.dumps(res))
    return damage


def _chance(**kw):
    def damage(d: Path):
        res = json.loads((d / "result.json").read_text())
        res["chance"].update(kw)
        (d / "result.json").write_text(json.dumps(res))
    return damage


def _write(name, data):
    return lambda d: (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def _only_key(d: Path):
    (d / "result.json").write_text(json.dumps({"config_key": d.name}))


def _long_history_field(d: Path):
    text = (d / "history.csv").read_text().splitlines()
    cells = text[1].split(",")
    cells[-1] = "7" * 200_000  # one cell past csv's own 128 KiB limit
    (d / "history.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")


def _deep_config(d: Path):
    cfg = json.loads((d / "config.json").read_text())
    blob = json.dumps(cfg)
    (d / "config.json").write_text(blob[:-1] + ', "x": ' + "[" * 50_000 + "]" * 50_000 + "}")


DAMAGES = {
    "deeply nested result.json": _write("result.json", "[" * 100_000 + "]" * 100_000),
    "deeply nested config.json": _deep_config,
    "result.json nested 20 deep": _set("message", json.loads("[" * 20 + "]" * 20)),
    "a history.csv field over 128 KiB": _long_history_field,
    "a history.csv with a NUL byte": lambda d: (d / "history.csv").write_bytes(
        (d / "history.csv").read_bytes() + b"1,\x00,2\n"),
    "a history.csv of one 2 MiB line": _write("history.csv", "epoch," + "9" * (2 << 20) + "\n"),
    "chance null": _set("chance", None),
    "chance band reversed": _chance(band=[0.2, 0.05]),
    "chance band of one number": _chance(band=[0.1]),
    "chance uniform zero": _chance(uniform=0),
    "test_acc a word": _set("test_acc", "abc"),
    "test_acc 1.5": _set("test_acc", 1.5),
    "test_acc NaN": lambda d: (d / "result.json").write_text(
        re.sub(r'"test_acc": [^,]+', '"test_acc": NaN', (d / "result.json").read_text())),
    "test_acc true": _set("test_acc", True),
    "train_acc null": _set("train_acc", None),
    "epochs 2.5": _set("epochs", 2.5),
    "epochs negative": _set("epochs", -3),
    "outcome unknown": _set("outcome", "banana"),
    "verdict unknown": _set("verdict", "maybe"),
    "parameters a list": _set("parameters", [1, 2]),
    "message a number": _set("message", 5),
    "a result.json holding only config_key": _only_key,
    "result.json a list": _write("result.json", "[1, 2, 3]"),
    "result.json of 2 MiB": _set("message", "x" * (2 << 20)),
    "config.json's environment a list": lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "environment": [1]})),
    "config.json's key a number": lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "config_key": 7})),
    "labels.npy random bytes": _write("labels.npy", os.urandom(300)),
    "labels.npy an object array": lambda d: __import__("numpy").save(
        d / "labels.npy", __import__("numpy").array([{"a": 1}], dtype=object), allow_pickle=True),
    "scores.csv ragged": _write("scores.csv", "index,label\n1\n2,3,4\n"),
    "detection.csv of words": _write("detection.csv", "score,direction,auroc,precision_at_k,k,n\nx,y,z,w,v,u\n"),
    "membership.npz not an archive": _write("membership.npz", b"PK\x03\x04 not really"),
    "examples.npz not an archive": _write("examples.npz", b"\x93NUMPY garbage"),
}


@pytest.mark.parametrize("what", DAMAGES)
def test_a_damaged_record_of_any_kind_is_named_in_one_line(what, small_store, tmp_path):
    store = copy_store(small_store, tmp_path)
    key = sorted(store.done_keys())[0]
    d = store.record_dir(key)
    assert check_record(d) is None
    DAMAGES[what](d)
    why = check_record(d)
    assert why and len(why) <= 200 and "\n" not in why, why
    assert key not in Store(store.root).done_keys(warn=False)


def test_an_old_record_that_spent_its_budget_still_reads(small_store, tmp_path):
    from rote.experiments.record import BUDGET_SPENT, read_record

    store = copy_store(small_store, tmp_path)
    key = sorted(store.done_keys())[0]
    _set("outcome", "unfinished")(store.record_dir(key))
    assert check_record(store.record_dir(key)) is None
    assert read_record(store.record_dir(key)).outcome == BUDGET_SPENT
    assert key in Store(store.root).done_keys()


def test_damaged_records_never_crash_table_load_report_plot_and_are_quarantined(small_store, tmp_path, capsys):
    import rote

    store = copy_store(small_store, tmp_path)
    keys = sorted(store.done_keys())
    kept = keys[-1]
    worst = ["deeply nested result.json", "deeply nested config.json", "a history.csv field over 128 KiB",
             "chance null", "test_acc a word"]
    for k, what in zip(keys, worst):
        DAMAGES[what](store.record_dir(k))
    assert store.done_keys() == {kept}
    capsys.readouterr()
    for command in ("table", "report", "plot"):
        code, _, err = run_main(capsys, command, store.root)
        assert code == 0 and "Traceback" not in err, (command, err)
        assert all(line.startswith("rote: warning: record runs/") for line in err.strip().splitlines()), err
    runs, histories = rote.load(store.root)
    assert list(runs["key"]) == [kept] and set(histories["key"]) == {kept}

    # the next sweep sets each aside in one line and redoes it
    f = tmp_path / "small.yaml"
    f.write_text(SMALL)
    code, out, err = run_main(capsys, "sweep", f, "--out", store.root, "--jobs", "1", "--no-estimate")
    assert code == 0, err
    moved = [line for line in err.splitlines() if "moved to" in line]
    assert len(moved) == len(worst) and all(len(line) < 400 for line in moved), err
    assert store.done_keys() == set(keys)


# -- 4. a dead local worker -----------------------------------------------------------------


def test_a_killed_worker_is_retried_and_the_sweep_carries_on(tmp_path, mnist):
    f = tmp_path / "w.yaml"
    text = LONG.replace("epochs: 5000", "epochs: 80")
    f.write_text(text)
    store = Store(tmp_path / "store")
    p = _popen(["sweep", f, "--out", store.root, "--jobs", "2", "--no-estimate"], tmp_path)
    try:
        running = []
        assert _wait(lambda: running.extend(_training_temps(store, 1)) or running), "no run started"
        victim = int(running[0].name.rsplit("-", 1)[1].split(".")[0])
        assert victim != p.pid  # a worker's
        os.kill(victim, signal.SIGKILL)
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "4 run(s) finished, 0 failed" in out
    assert store.done_keys() == {c.key() for c in parse_sweep(text).configs}
    assert not (store.root / "failed").exists() and not list(store.runs.glob(".tmp-*"))


KILLER = '''
import multiprocessing
import os
import signal

import torch.nn as nn


def make(in_shape, classes):
    # kills the worker that builds it, as an out-of-memory kill would (the driver only checks the name)
    if multiprocessing.current_process().name != "MainProcess":
        os.kill(os.getpid(), signal.SIGKILL)
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 8), nn.ReLU(), nn.Linear(8, classes))
'''


def test_a_run_that_kills_its_worker_fails_alone(tmp_path, mnist, monkeypatch):
    (tmp_path / "killer.py").write_text(KILLER)
    monkeypatch.syspath_prepend(str(tmp_path))  # to read the sweep file here too
    f = tmp_path / "k.yaml"
    text = LONG.replace("epochs: 5000", "epochs: 40").replace("  - {labels: true}", "  - {model: 'killer:make'}")
    f.write_text(text)
    store = Store(tmp_path / "store")
    p = _popen(["sweep", f, "--out", store.root, "--jobs", "2", "--retries", "0", "--no-estimate"], tmp_path)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 1, err
    assert "3 run(s) finished, 1 failed" in out
    (bad,) = [c for c in parse_sweep(text).configs if c.model == "killer:make"]
    failed = json.loads((store.root / "failed" / f"{bad.key()}.json").read_text())
    assert "worker process died 1 time(s)" in failed["error"]
    assert store.done_keys() == {c.key() for c in parse_sweep(text).configs} - {bad.key()}


# -- 5. every bad value, before anything is written -----------------------------------------


@pytest.mark.parametrize("settings, words", [
    ({"seed": -1}, "seed must be >= 0"),
    ({"momentum": -0.5}, "momentum must be in [0, 1)"),
    ({"momentum": 1.0}, "momentum must be in [0, 1)"),
    ({"lr": "1e400"}, "lr must be a finite positive number"),
    ({"lr": "inf"}, "lr must be a finite positive number"),
    ({"weight_decay": "1e400"}, "weight_decay must be a finite number"),
    # finite in Python, but past float32, where the optimiser computes
    ({"lr": "1e39"}, "lr must be a finite positive number of at most 3.4e+37"),
    ({"lr": "3.3e38"}, "lr must be a finite positive number of at most 3.4e+37"),
    ({"weight_decay": "1e39"}, "weight_decay must be a finite number >= 0 of at most 3.4e+38"),
])
def test_bad_run_values_are_config_errors(settings, words, tmp_path, capsys):
    with pytest.raises(ConfigError, match=re.escape(words)):
        RunConfig.from_dict(settings)
    (k, v), = settings.items()
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "run", f"--{k.replace('_', '-')}", v, "--out", out)
    assert code == 2
    one_line(err, words)
    assert not out.exists()


SWEEP_ERRORS = [
    (SMALL.replace("seeds: 2", "seeds: [0, -3]"), "negative seed"),
    (SMALL.replace("grid:", "grid:\n  momentum: [-0.5]"), "momentum must be in [0, 1)"),
    (SMALL.replace("grid:", "grid:\n  lr: [1e400]"), "lr must be a finite positive number"),
    (SMALL.replace("grid:", "grid:\n  weight_decay: [.inf]"), "weight_decay must be a finite number"),
    (SMALL.replace("name: small", "name: ../../escape"), "must be a plain name"),
    (SMALL.replace("name: small", "name: /tmp/x"), "must be a plain name"),
    (SMALL.split("grid:")[0] + "cases:\n  - {labels: true}\n  - {labels: true}\n", "repeats the case"),
    (SMALL.replace("seeds: 2", "seeds: 1000000"), "at most 100,000"),
    (SMALL.replace("seeds: 2", "seeds: 1000000000000"), "at most 100,000"),
]


@pytest.mark.parametrize("text, words", SWEEP_ERRORS)
def test_bad_sweep_files_are_one_line_and_write_nothing(text, words, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    t0 = time.time()
    code, _, err = run_main(capsys, "sweep", f, "--out", tmp_path / "store", "--dry-run")
    assert time.time() - t0 < 30
    assert code == 2
    one_line(err, words)
    assert not (tmp_path / "store").exists() and not (tmp_path / "sweeps").exists()


def test_bad_places_and_flags_are_one_line(small_store, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SMALL)
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--out", tmp_path / "afile"], "is a file"),
        (["--out", tmp_path / "afile" / "store"], "not a directory"),
        (["--out", "/proc/rote-store"], "cannot make store"),
        (["--out", tmp_path / "store", "--retries", "-1"], "must be at least 0"),
    ]
    for args, words in cases:
        code, _, err = run_main(capsys, "sweep", f, "--no-estimate", *args)
        assert code == 2, (args, err)
        one_line(err, words)
    assert not (tmp_path / "store").exists() and (tmp_path / "afile").read_text() == "x"
    with pytest.raises(ConfigError, match="retries"):
        execute.run_sweep(execute.plan(parse_sweep(SMALL), tmp_path / "store"), retries=-1)
    assert not (tmp_path / "store").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(SMALL.encode() + b"# \xff\xfe\n")
    code, _, err = run_main(capsys, "sweep", bad, "--out", tmp_path / "store", "--dry-run")
    assert code == 2
    one_line(err, "not UTF-8")


def test_read_only_store_is_one_line(small_store, tmp_path, capsys, monkeypatch):
    if os.geteuid() == 0:
        # root writes through permission bits, so judge them as any other user would
        from rote.experiments import store as store_module

        def access(path, mode):
            bits = os.stat(path).st_mode
            return not (mode & os.W_OK) or bool(bits & 0o200)

        monkeypatch.setattr(store_module.os, "access", access)
    store = copy_store(small_store, tmp_path)
    f = tmp_path / "s.yaml"
    f.write_text(SMALL.replace("seeds: 2", "seeds: 3"))
    before = sorted(p.name for p in store.root.rglob("*"))
    for p in [store.root, store.runs]:
        p.chmod(0o555)
    try:
        code, _, err = run_main(capsys, "sweep", f, "--out", store.root, "--no-estimate")
    finally:
        for p in [store.root, store.runs]:
            p.chmod(0o755)
    assert code == 2
    one_line(err, "not writable")
    assert sorted(p.name for p in store.root.rglob("*")) == before


RUN = ["run", "--n-train", 100, "--model", "mlp:16", "--epochs", 1, "--record-examples", "false", "--device", "cpu",
       "--quiet"]


def test_run_out_that_cannot_be_made_is_one_line(tmp_path, capsys, mnist):
    (tmp_path / "afile").write_text("x")
    cases = [
        (tmp_path / "afile", "is a file"),
        (tmp_path / "afile" / "run", "is a file, not a directory"),
        ("/proc/rote-run", "cannot make /proc/rote-run"),
    ]
    for out, words in cases:
        code, _, err = run_main(capsys, *RUN, "--out", out)
        assert code == 2, (out, err)
        one_line(err, words)
    assert (tmp_path / "afile").read_text() == "x" and not Path("/proc/rote-run").exists()


def _as_another_user(monkeypatch):
    """Judge permission bits as a user other than root would (root writes through them)."""
    if os.geteuid() == 0:
        from rote.experiments import record as record_module, store as store_module

        def access(path, mode):
            return not (mode & os.W_OK) or bool(os.stat(path).st_mode & 0o200)

        for m in (store_module, record_module):
            monkeypatch.setattr(m.os, "access", access)


def test_table_report_plot_on_a_read_only_store_are_one_line(small_store, tmp_path, capsys, monkeypatch):
    _as_another_user(monkeypatch)
    store = copy_store(small_store, tmp_path)
    before = sorted(str(p) for p in store.root.rglob("*"))
    store.root.chmod(0o555)
    try:
        for command in ("table", "report", "plot"):
            code, _, err = run_main(capsys, command, store.root)
            assert code == 2, (command, err)
            one_line(err, "not a writable directory")
    finally:
        store.root.chmod(0o755)
    assert sorted(str(p) for p in store.root.rglob("*")) == before


def _disk_full(monkeypatch, code=errno.ENOSPC):
    """Every fsync (every file rote writes: atomic writes and history rows) fails as on a full disk."""
    def fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_is_one_line_and_leaves_the_store_consistent(small_store, tmp_path, capsys, monkeypatch, mnist):
    store = copy_store(small_store, tmp_path)
    keys = store.done_keys()
    before = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"}
    f = tmp_path / "s.yaml"
    f.write_text(SMALL.replace("seeds: 2", "seeds: 3"))
    _disk_full(monkeypatch)
    code, _, err = run_main(capsys, *RUN, "--out", tmp_path / "run")
    assert code == 2
    one_line(err, "no space left on the device")
    assert "partial run directory is removed" in err and not (tmp_path / "run").exists()
    for args in (["table", store.root], ["sweep", f, "--out", store.root, "--jobs", 1, "--no-estimate"]):
        code, _, err = run_main(capsys, *args)
        assert code == 2, (args, err)
        one_line(err, "no space left on the device")
        assert ("the store stays consistent" if args[0] == "sweep" else "the store is unchanged") in err
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in before} == before and Store(store.root).done_keys() == keys
    assert not [p for p in store.root.rglob("*.part")] and not list(store.runs.glob(".tmp-*"))


def test_a_read_only_filesystem_while_writing_is_one_line(small_store, tmp_path, capsys, monkeypatch):
    store = copy_store(small_store, tmp_path)
    _disk_full(monkeypatch, errno.EROFS)
    code, _, err = run_main(capsys, "table", store.root)
    assert code == 2
    one_line(err, "Read-only file system")


# -- leftovers: scratch space named by its owner, removed by the next one -------------------------------


def test_scratch_of_a_gone_process_is_removed_by_the_next(tmp_path):
    from rote.experiments import scratch

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me, start = os.getpid(), scratch._start_time(os.getpid())
    dead = tmp_path / f"rote-{gone.pid}-{start}-abc"  # its process exited
    reused = tmp_path / f"rote-{me}-{int(start) + 1}-abc"  # this pid, but another process's start
    mine = tmp_path / f"rote-{me}-{start}-abc"  # a live owner's
    other = tmp_path / "rote-notes"  # not scratch at all
    for d in (dead, reused, mine, other):
        (d / "run0").mkdir(parents=True)
    with scratch.scratch("rote-", tmp_path) as d:
        assert d.is_dir() and d.name.startswith(f"rote-{me}-{start}-")
    assert not d.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])


def test_a_report_killed_mid_way_leaves_no_scratch_behind(small_store, tmp_path, capsys):
    store = copy_store(small_store, tmp_path)
    p = _popen(["report", store.root], tmp_path)
    try:
        assert _wait(lambda: list(store.root.glob(".rote-report-*")), 120), p.communicate()
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        p.kill()
    assert list(store.root.glob(".rote-report-*"))  # a kill runs no cleanup
    code, _, err = run_main(capsys, "report", store.root)
    assert code == 0, err
    assert not list(store.root.glob(".rote-report-*"))


def test_a_closed_pipe_is_a_quiet_exit(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "rote", "data", "list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # as `| head` does once it has its lines
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert err == "" and p.returncode == 141
