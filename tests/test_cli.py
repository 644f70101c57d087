"""The command line as a user meets it: errors are one line and exit 2; runs leave complete records."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rote.cli import main


def rote(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "rote", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


BAD_ARGS = [
    (["run", "--dataset", "cifar"], "unknown dataset"),
    (["run", "--model", "resnet"], "unknown model"),
    (["run", "--device", "tpu"], "unknown device"),
    (["run", "--device", "cuda"], "no CUDA"),
    (["run", "--n-train", "70000"], "larger than"),
    (["run", "--n-train", "5"], "smaller than the number of classes"),
    (["run", "--val-split", "1"], "val_split"),
    (["run", "--epochs", "ten"], "must be an integer"),
    (["run", "--nonsense"], "unrecognized arguments"),
    (["data", "fetch", "imagenet"], "unknown dataset"),
]


def run_main(capsys, *args):
    """main() in-process, as the console script calls it: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse exits on usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, words", BAD_ARGS)
def test_user_errors_are_one_line_exit_2_and_leave_nothing(tmp_path, capsys, args, words):
    if args == ["run", "--device", "cuda"]:
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU, so asking for one is not an error")
    out = tmp_path / "out"
    extra = ["--out", str(out)] if args[0] == "run" and "--nonsense" not in args else []
    code, _, err = run_main(capsys, *args, *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err
    assert not out.exists()


def test_console_entry_point_reports_errors_the_same_way(tmp_path):
    p = rote("run", "--n-train", "70000", "--out", str(tmp_path / "out"))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "rote: error: n_train=70000 is larger than mnist's 60000 training images"]


def test_data_dir_without_files_is_one_line(tmp_path, capsys):
    code, _, err = run_main(capsys, "run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "lacks train-images-idx3-ubyte" in err and not (tmp_path / "out").exists()


def test_run_writes_a_complete_record(tmp_path, mnist):
    out = tmp_path / "run"
    p = rote("run", "--n-train", "200", "--epochs", "3", "--stop-at", "none", "--seed", "2", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "chance" in p.stdout and str(out) in p.stdout
    files = sorted(f.name for f in out.iterdir())
    assert files == ["config.json", "curves.png", "curves.svg", "detection.csv", "examples.npz", "examples.png",
                     "examples.svg", "examples_grid.png", "examples_grid.svg", "history.csv", "labels.npy",
                     "result.json", "scores.csv"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["n_train"] == 200 and cfg["config"]["seed"] == 2
    assert {"rote", "torch", "python", "device", "git_commit", "command"} <= set(cfg["environment"])
    result = json.loads((out / "result.json").read_text())
    for k in ("train_acc", "train_loss", "val_acc", "val_loss", "test_acc", "test_loss", "epochs", "outcome",
              "memorized_epoch", "seconds_per_epoch", "images_per_second", "chance", "verdict"):
        assert k in result
    assert set(result["chance"]) >= {"uniform", "histogram", "band"} and result["verdict"] in ("below", "within", "above")
    assert result["epochs"] == 3 and result["outcome"] in ("budget-spent", "memorized")
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,seconds,loss,acc,val_loss,val_acc")
    labels = np.load(out / "labels.npy")
    assert labels.shape == (200,) and set(labels.dtype.names) == {"label", "true_label", "changed", "validation"}
    assert np.array_equal(labels["true_label"], mnist.y_train[:200])
    assert np.array_equal(labels["changed"], labels["label"] != labels["true_label"])
    assert labels["validation"].sum() == 20 and labels["validation"][-20:].all()


def test_ctrl_c_keeps_config_and_history(tmp_path, mnist):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "rote", "run", "--n-train", "1000", "--epochs", "500",
                          "--stop-at", "none", "--collapse-patience", "0", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         # a shell's background jobs inherit SIGINT ignored; a terminal's Ctrl-C does not
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for two epochs to be written
        h = out / "history.csv"
        if h.exists() and len(h.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "interrupted" in err and str(out) in err and "Traceback" not in err
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) >= 3 and all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)
    assert json.loads((out / "config.json").read_text())["config"]["epochs"] == 500
    assert not (out / "result.json").exists()


def test_help_explains_every_setting(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--n-train", "--labels", "--init", "--stop-at", "--eval-every", "--collapse-patience", "--seed",
                 "--device", "--data-dir", "--out"):
        assert flag in text


# -- help and small commands ------------------------------------------------------------------


def test_sweep_help_shows_a_format_that_parses(capsys):
    import textwrap

    from rote.cli import SWEEP_FORMAT
    from rote.experiments.sweep import parse_sweep

    code, out, _ = run_main(capsys, "sweep", "--help")
    assert code == 0 and "the sweep file (YAML):" in out and "seeds: 5" in out and "rote sweep corruption-quick" in out
    example = textwrap.dedent(SWEEP_FORMAT.split("\n\n")[0].split("\n", 1)[1])
    sweep = parse_sweep(example, "example.yaml")
    assert len(sweep.configs) == 2 * 4 * 5 and "(here 2 x 4 x 5 = 40)" in out
    assert {c.inputs for c in sweep.configs} == {"none", "shuffled-pixels"} and sweep.configs[0].n_train == 3000


def test_bare_rote_prints_help_and_exits_0(capsys):
    code, out, _ = run_main(capsys)
    assert code == 0 and "usage: rote" in out and "sweep" in out


def test_models_on_cifar10_give_table_1s_counts(capsys):
    code, out, _ = run_main(capsys, "models", "--dataset", "cifar10")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:] if line.split()[0][:1].isalpha()}
    assert rows["mlp:512"] == ["1,578,506", "1,209,866"]  # 3x32x32 as stored; 3x28x28 after --preprocess zhang
    assert rows["mlp:512x512x512"][1] == "1,735,178"
    code, out, err = run_main(capsys, "models", "--dataset", "imagenet")
    assert code == 2 and "unknown dataset" in err


def test_table_and_report_on_a_run_directory_say_what_they_need(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    for command in ("table", "report"):
        code, _, err = run_main(capsys, command, str(d))
        assert code == 2 and "one run's directory" in err and "rote sweep" in err and "--out" not in err
        assert len(err.strip().splitlines()) == 1
