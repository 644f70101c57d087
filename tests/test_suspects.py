"""`rote suspects`: the ranking by the default score, the believed label from the recorded predictions, the
files and the summary, judged against the labels rote changed, and a user's npz without a true mask."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from rote.analysis.examples import ExampleRecord, load_examples, save_examples
from rote.analysis.scores import believed_labels
from rote.analysis.suspects import judge, rank, suspect_rows
from rote.cli import main
from rote.errors import DataError


def _scores(correctness, confidence, changed):
    n = len(correctness)
    return {"index": np.arange(n) + 100, "label": np.zeros(n, int), "true_label": np.where(changed, 1, 0),
            "changed": np.asarray(changed), "correctness": np.asarray(correctness, float),
            "confidence": np.asarray(confidence, float), "first_learned": np.r_[np.nan, np.arange(2.0, n + 1)]}


def test_the_least_often_right_come_first_ties_by_confidence():
    s = _scores([0.5, 0.0, 0.0, 1.0], [0.4, 0.3, 0.1, 0.9], [False, True, True, False])
    r = rank(s)
    assert list(r.order) == [2, 1, 0, 3]  # correctness 0 twice: the less confident first
    rows = suspect_rows(s, r, top=2)
    assert [x["index"] for x in rows] == [102, 101] and rows[0]["rank"] == 1 and rows[0]["changed"] is True
    j = judge(s, r)
    assert j.auroc == 1.0 and j.precision_at_k == 1.0 and j.changed == 2
    # never learned (NaN) is the most suspicious first-learned epoch
    assert rank(s, "first_learned").order[0] == 0
    with pytest.raises(DataError, match="unknown score"):
        rank(s, "loudness")
    assert suspect_rows(s, r, judged=False)[0].keys() == {"rank", "index", "given_label", "correctness"}


def test_believed_label_is_the_commonest_prediction_and_old_records_load_without_it(tmp_path):
    correct = np.zeros((3, 2), bool)
    base = dict(correct=correct, prob=np.zeros((3, 2)), margin=np.zeros((3, 2)), loss=np.zeros((3, 2)),
                el2n=np.zeros((3, 2)), index=[0, 1], label=[0, 1], true_label=[0, 1], changed=[False, False])
    rec = ExampleRecord(**base, pred=[[2, 1], [2, 0], [3, 0]])
    assert list(believed_labels(rec)) == [2, 0]
    save_examples(tmp_path / "a.npz", **base)  # as before predictions were kept
    old = load_examples(tmp_path / "a.npz")
    assert old.pred is None and believed_labels(old) is None
    save_examples(tmp_path / "b.npz", **base, pred=[[2, 1], [2, 0], [3, 0]])
    assert load_examples(tmp_path / "b.npz").pred.shape == (3, 2)


def test_suspects_of_a_real_run_find_the_changed_labels(tmp_path, mnist, capsys):
    import rote

    run = tmp_path / "r"
    assert main(["run", "--n-train", "600", "--labels", "partial:0.2", "--model", "mlp:64", "--epochs", "12",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["suspects", str(run), "--top", "16"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "ranked by correctness" in line and "AUROC" in line
    rows = list(csv.DictReader(open(run / "suspects.csv")))
    assert len(rows) == 540 and [int(r["rank"]) for r in rows[:3]] == [1, 2, 3]
    assert {"index", "given_label", "believed_label", "correctness", "true_label", "changed"} <= rows[0].keys()
    # the ranking is judged by the labels rote changed: the top of the list is mostly changed labels,
    # and a changed label is believed to be its true class more often than not
    top = rows[:100]
    changed = [r for r in top if r["changed"] == "True"]
    assert len(changed) > 80
    assert sum(r["believed_label"] == r["true_label"] for r in changed) > len(changed) / 2
    assert (run / "suspects.png").stat().st_size > 10_000
    df = rote.suspects(run, score="variability", out=tmp_path / "v")
    assert list(df.columns[:3]) == ["rank", "index", "given_label"] and len(df) == 540
    assert (tmp_path / "v" / "suspects.csv").is_file()


def test_suspects_on_a_users_npz_without_a_true_mask(tmp_path, mnist, capsys):
    x, y = mnist.x_train[:400], mnist.y_train[:400].copy()
    y[:40] = (y[:40] + 1) % 10  # the user's own wrong labels, unknown to rote
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=mnist.x_test[:100], y_test=mnist.y_test[:100])
    run = tmp_path / "r"
    assert main(["run", "--dataset", f"npz:{tmp_path / 'mine.npz'}", "--labels", "true", "--n-train", "400",
                 "--model", "mlp:64", "--epochs", "10", "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["suspects", str(run)]) == 0
    line = capsys.readouterr().out
    assert "AUROC" not in line  # no mask to judge by
    rows = list(csv.DictReader(open(run / "suspects.csv")))
    assert "changed" not in rows[0] and "true_label" not in rows[0]
    hits = sum(int(r["index"]) < 40 for r in rows[:40])
    assert hits > 20  # the ranking finds the user's wrong labels well above chance (4 of 40)


def test_a_run_without_per_example_records_is_one_line(tmp_path, mnist, capsys):
    run = tmp_path / "r"
    assert main(["run", "--n-train", "100", "--epochs", "1", "--model", "mlp:8", "--record-examples", "false",
                 "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["suspects", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--record-examples true" in err
    assert main(["suspects", str(tmp_path / "nothing")]) == 2
