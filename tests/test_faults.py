"""A run is never lost and never silently changed: its end under kills, damaged checkpoints, two writers, a full
disk, Ctrl-C in a script, and the options and threads a resume keeps; and hostile inputs, each one line."""

from __future__ import annotations

import errno
import io
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rote.cli import main
from rote.config import RunConfig
from rote.errors import ConfigError, DataError, RoteError
from rote.experiments.record import CHECKPOINT, CONFIG, HISTORY, MODEL, RESULT
from rote.experiments.run import RunInterrupted, run, run_dir_lock
from rote.training.checkpoint import Checkpoint, seal, unseal

TIMINGS = {"seconds", "eval_seconds", "seconds_per_epoch", "images_per_second", "train_seconds",
           "seconds_to_memorize"}
SMALL = dict(n_train=150, epochs=4, model="mlp:16", stop_at=None, record_examples=False, device="cpu")


def _record(d: Path):
    """(history without timings, result without timings) of a finished run directory."""
    rows = [line.split(",") for line in (d / HISTORY).read_text().splitlines()]
    keep = [i for i, k in enumerate(rows[0]) if k not in TIMINGS]
    result = {k: v for k, v in json.loads((d / RESULT).read_text()).items() if k not in TIMINGS}
    return [[r[i] for i in keep] for r in rows], result


def _interrupt_at(epoch: int):
    def on_epoch(rec):
        if rec.epoch == epoch:
            raise KeyboardInterrupt
    return on_epoch


@pytest.fixture
def reference(tmp_path, mnist):
    d = tmp_path / "reference"
    run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None)
    return _record(d)


def _interrupted_run(d: Path, mnist, epoch=2, **kw):
    with pytest.raises(RunInterrupted) as e:
        run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, on_epoch=_interrupt_at(epoch),
            checkpoint_every=0, **kw)
    # the interrupt came in the epoch's end, before its checkpoint: the one before is kept
    assert e.value.kept_epoch == epoch - 1 and (d / CHECKPOINT).is_file()


# -- the end of a run ----------------------------------------------------------------------------------------


def test_a_kill_between_the_result_and_the_checkpoints_removal_loses_nothing(tmp_path, mnist, reference,
                                                                            monkeypatch, capsys):
    d = tmp_path / "r"

    def killed(self):  # the process dies in the instant after result.json is on disk
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(Checkpoint, "remove", killed)
        with pytest.raises(KeyboardInterrupt):
            run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, checkpoint_every=0)
    assert (d / RESULT).is_file() and (d / CHECKPOINT).is_file()  # the result was published first
    assert main(["run", "--resume", str(d)]) == 0  # what a user types next
    assert "had finished" in capsys.readouterr().out
    assert _record(d) == reference and not (d / CHECKPOINT).exists()
    assert main(["run", "--resume", str(d)]) == 2  # now there is nothing to resume


def _rows(p: Path) -> int:
    try:
        return len(p.read_text().splitlines()) - 1
    except OSError:
        return 0


def test_kills_at_random_instants_around_the_end_never_lose_the_run(tmp_path, mnist, reference):
    """SIGKILL at an instant around the run's end (when the last epoch's row appears, when result.json
    appears, the row before it, or a random delay after one of these), then what a user would do next (resume if unfinished): every
    trial ends with the uninterrupted record."""
    rng = random.Random(0)
    flags = ["--n-train", "150", "--epochs", "4", "--model", "mlp:16", "--stop-at", "none", "--record-examples",
             "false", "--device", "cpu", "--checkpoint-every", "0", "--quiet"]
    outcomes = {"finished before the kill": 0, "resumed": 0, "result and checkpoint both on disk": 0}
    trials = [(3, 0.0), (4, 0.0), ("result", 0.0)] + [(rng.choice((3, 4, "result")), rng.uniform(0, 0.05))
                                                      for _ in range(3)]
    for trial, (event, delay) in enumerate(trials):
        d = tmp_path / f"t{trial}"
        p = subprocess.Popen([sys.executable, "-m", "rote", "run", *flags, "--out", str(d)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        seen = (lambda: (d / RESULT).exists()) if event == "result" else (lambda: _rows(d / HISTORY) >= event)
        while time.time() < deadline and p.poll() is None and not seen():
            time.sleep(0.0005)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        err = p.communicate(timeout=60)[1]
        assert p.returncode in (0, -signal.SIGKILL), err
        if (d / RESULT).is_file() and not (d / CHECKPOINT).exists():
            outcomes["finished before the kill"] += 1
        else:
            if (d / RESULT).is_file():
                outcomes["result and checkpoint both on disk"] += 1
            assert main(["run", "--resume", str(d), "--quiet"]) == 0
            outcomes["resumed"] += 1
        assert _record(d) == reference, (trial, event, delay)
        assert not (d / CHECKPOINT).exists()
    print(outcomes)  # e.g. {'finished before the kill': 5, 'resumed': 3, ...}: the instants land on both sides
    assert sum(outcomes[k] for k in ("finished before the kill", "resumed")) == len(trials)


# -- damaged checkpoints ------------------------------------------------------------------------------------


def test_one_flipped_bit_in_a_checkpoint_is_refused_before_anything_is_loaded(tmp_path, mnist, reference, capsys):
    d = tmp_path / "r"
    _interrupted_run(d, mnist)
    blob = bytearray((d / CHECKPOINT).read_bytes())
    blob[len(blob) // 2] ^= 0x10  # deep inside the optimiser's and weights' tensors
    (d / CHECKPOINT).write_bytes(bytes(blob))
    lines = []
    assert Checkpoint(d / CHECKPOINT, [RunConfig(**SMALL).key()]).load(lines.append) is None
    assert len(lines) == 1 and "SHA-256" in lines[0] and "starts over" in lines[0]
    run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, resume=True)
    assert _record(d) == reference


def test_a_tampered_epoch_with_a_valid_checksum_starts_over_in_one_line(tmp_path, mnist, reference, capsys):
    d = tmp_path / "r"
    _interrupted_run(d, mnist, epoch=3)
    obj = torch.load(io.BytesIO(unseal((d / CHECKPOINT).read_bytes())), weights_only=True)
    obj["state"]["epoch"] = 3  # the histories it holds have 2 epochs
    buf = io.BytesIO()
    torch.save(obj, buf)
    (d / CHECKPOINT).write_bytes(seal(buf.getvalue()))
    capsys.readouterr()
    run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, resume=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit" in err and "starts over" in err
    assert _record(d) == reference


def test_a_directory_where_the_checkpoint_goes_is_refused_before_training(tmp_path, mnist):
    d = tmp_path / "r"
    d.mkdir()
    (d / CHECKPOINT).mkdir()
    (d / CONFIG).write_text("{}")
    epochs = []
    with pytest.raises(RoteError, match="is not a file"):
        run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, resume=True, on_epoch=epochs.append)
    assert epochs == []


# -- one writer, a full disk, Ctrl-C ---------------------------------------------------------------------


def test_a_second_writer_of_one_run_directory_is_refused_in_one_line(tmp_path, mnist, capsys):
    d = tmp_path / "r"
    with run_dir_lock(d):  # another process is writing d
        code = main(["run", "--n-train", "100", "--epochs", "1", "--model", "mlp:16", "--quiet", "--out", str(d)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "another rote process is writing" in err
    assert list(d.iterdir()) == []  # nothing written


def test_a_full_disk_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path, mnist, reference, monkeypatch):
    import rote.experiments.record as record

    d = tmp_path / "r"
    real = record.History.append

    def full(self, rec):
        if rec.epoch == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(d / HISTORY))
        real(self, rec)
    with monkeypatch.context() as m:
        m.setattr(record.History, "append", full)
        with pytest.raises(RoteError) as e:
            run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, checkpoint_every=0)
    assert "no space left" in str(e.value) and f"rote run --resume {d}" in str(e.value)
    assert (d / CHECKPOINT).is_file()
    run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, resume=True)
    assert _record(d) == reference


def test_ctrl_c_in_a_script_is_not_swallowed_by_except_exception(tmp_path, mnist):
    import rote

    assert issubclass(RunInterrupted, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        try:
            rote.run(**{k: v for k, v in SMALL.items() if k != "stop_at"}, stop_at="none", out=tmp_path / "r",
                     on_epoch=_interrupt_at(1), checkpoint_every=0)
        except Exception:  # what a user's script does around a call
            pytest.fail("the interrupt was swallowed as an Exception")


# -- what a resume keeps ------------------------------------------------------------------------------------


def test_a_resume_keeps_the_threads_the_run_started_with_and_records_it(tmp_path, mnist):
    d = tmp_path / "r"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _interrupted_run(d, mnist)
        torch.set_num_threads(2)
        seen = []
        run(RunConfig(**SMALL), d, dataset=mnist, log=lambda s: None, resume=True,
            on_epoch=lambda rec: seen.append(torch.get_num_threads()))
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2  # the caller's threads come back
    finally:
        torch.set_num_threads(before)
    env = json.loads((d / CONFIG).read_text())["environment"]
    assert env["threads"] == 1 and [r["epoch"] for r in env["resumed"]] == [1] and env["resumed"][0]["threads"] == 1


def test_resume_with_other_threads_is_refused_in_one_line(tmp_path, mnist, capsys):
    d = tmp_path / "r"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _interrupted_run(d, mnist)
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    assert main(["run", "--resume", str(d), "--threads", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads 1" in err and (d / CHECKPOINT).is_file()


def test_save_model_survives_a_resume(tmp_path, mnist):
    d = tmp_path / "r"
    _interrupted_run(d, mnist, save_model=True)
    lines = []
    run(RunConfig(**SMALL), d, dataset=mnist, log=lines.append, resume=True)
    assert (d / MODEL).is_file() and any("--save-model" in s for s in lines)


# -- hostile inputs, one line each ----------------------------------------------------------------------------


def _npz(path: Path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), y_train=np.arange(40) % 3,
                  x_test=rng.integers(0, 255, (10, 8, 8), dtype=np.uint8), y_test=np.arange(10) % 3)
    arrays.update(over)
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_an_npz_without_test_images_or_with_an_absurd_label_is_one_line(tmp_path):
    from rote.data.npz import load_user_npz

    name = _npz(tmp_path / "no_test.npz", x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="no test images"):
        load_user_npz(name)
    name = _npz(tmp_path / "huge.npz", y_train=np.array([0, 1] * 19 + [1, 2 ** 62]))
    with pytest.raises(DataError, match="renumber the classes"):
        load_user_npz(name)


def test_rote_sweep_checks_its_options_before_a_store_is_made(tmp_path):
    import rote

    spec = {"name": "x", "base": {"n_train": 100, "epochs": 1, "model": "mlp:16"}, "seeds": 1}
    for bad in ({"jobs": 0}, {"group": 0}, {"jobs": "2"}, {"retries": -1}, {"backend": "slurm"},
                {"tensorboard": tmp_path / "file"}):
        (tmp_path / "file").write_text("")
        with pytest.raises(ConfigError if "tensorboard" not in bad else RoteError):
            rote.sweep(spec, out=tmp_path / "store", **bad)
        assert not (tmp_path / "store").exists()


def test_a_file_given_as_tensorboard_dir_is_one_line(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    f = tmp_path / "logs"
    f.write_text("")
    code = main(["run", "--n-train", "100", "--epochs", "1", "--model", "mlp:16", "--tensorboard", str(f),
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a file" in err and not (tmp_path / "r").exists()


def test_a_damaged_packing_cache_is_measured_again_and_a_misspelt_packing_is_refused(tmp_path, monkeypatch):
    from rote.experiments import packing

    monkeypatch.setattr(packing, "cache_path", lambda: tmp_path / "packing.json")
    (tmp_path / "packing.json").write_text("[1, 2]")
    cfg = RunConfig(model="mlp:16")
    assert packing.cached(cfg, (1, 28, 28), 10, 1, 2) is None
    monkeypatch.setenv("ROTE_PACKING", "per_core")
    monkeypatch.setattr("rote.threads.usable_cores", lambda: 2)
    with pytest.raises(RoteError, match="ROTE_PACKING='per_core'"):
        packing.best_jobs(cfg, (1, 28, 28), 10, groups=2)


def test_where_takes_any_of_a_settings_values_and_never_writes_into_the_store(tmp_path, mnist, capsys):
    from rote.experiments.store import Store
    from rote.reporting.results import load, parse_where

    root = tmp_path / "s"
    store = Store(root).create()
    for n in (100, 120, 140):
        cfg = RunConfig(**{**SMALL, "n_train": n, "epochs": 1})
        tmp = store.temp_dir(cfg.key())
        run(cfg, tmp, dataset=mnist, log=lambda s: None)
        store.commit(cfg.key(), tmp)
    store.write_index()
    where = parse_where(["n_train=100", "n_train=140"])
    assert where == {"n_train": ["100", "140"]}
    assert sorted(r["config"]["n_train"] for r in load(root, where).records) == [100, 140]
    before = sorted(p.name for p in root.iterdir())
    for out in (root, root / "figures"):
        code = main(["table", str(root), "--where", "n_train=100", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "outside the store" in err
    assert sorted(p.name for p in root.iterdir()) == before
