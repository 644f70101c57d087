"""The recipe search behind the capacity study (docs/capacity-recipe.md): which optimiser settings fill a small model.

Every trial is one rote.run on uniform random MNIST labels, the whole training part scored (val_split 0), no
stop rule, the full training part evaluated every tenth of the budget; one thread. Each finished trial is one
row of docs/capacity-search.csv, and a rerun skips the trials already there, so the search can be stopped and
resumed. The winner per model is the trial with the most memorised bits at the end.

    PYTHONPATH=. python benchmarks/capacity_search.py [--stage 1|2|3|all] [--extra model=mlp:8,lr=3e-4,...]
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import rote
from rote.reporting.capacity import bits_from_loss, still_rising

OUT = Path(__file__).resolve().parent.parent / "docs" / "capacity-search.csv"
FIELDS = ["stage", "model", "parameters", "n_train", "epochs", "preprocess", "optimizer", "lr", "batch_size", "init",
          "schedule", "step_every", "step_gamma", "final_loss", "bits", "bits_per_parameter", "ideal_bits",
          "rising", "curve_bits", "seconds"]
COMMON = dict(labels="random", val_split=0.0, stop_at=None, record_examples=False, device="cpu", seed=0)

# where the search is made: near each model's saturation at 1-2 bits per parameter (N log2 10 ~ parameters x 1.5)
SEARCH_AT = {"mlp:8": (2000, 200), "mlp:32": (5000, 200), "cnn:4": (1000, 40)}


def trials(stage: str) -> list[dict]:
    out = []
    if stage in ("1", "all"):  # does the input scale matter? the default recipe, raw pixels against per-image whitening
        for pre in ("none", "zhang"):
            out.append(dict(stage=1, model="mlp:32", preprocess=pre, lr=3e-3, batch_size=256, init="torch"))
    if stage in ("2", "all"):  # mlp:8, the cheapest: lr x batch x init, per-image whitening
        for lr in (1e-3, 3e-3, 1e-2):
            for bs in (64, 256):
                for init in ("torch", "keras"):
                    out.append(dict(stage=2, model="mlp:8", preprocess="zhang", lr=lr, batch_size=bs, init=init))
    if stage in ("3", "all"):  # mlp:8 said: the smallest lr and batch won; go smaller, and check mlp:32 and cnn:4
        for lr, bs in ((3e-4, 64), (1e-3, 32)):
            out.append(dict(stage=3, model="mlp:8", preprocess="zhang", lr=lr, batch_size=bs, init="keras"))
        for lr in (3e-4, 1e-3, 3e-3):
            for init in ("torch", "keras"):
                out.append(dict(stage=3, model="mlp:32", preprocess="zhang", lr=lr, batch_size=64, init=init))
        for lr in (3e-4, 1e-3):
            out.append(dict(stage=3, model="cnn:4", preprocess="zhang", lr=lr, batch_size=64, init="keras"))
    for t in out:
        n, epochs = SEARCH_AT[t["model"]]
        t.setdefault("n_train", n)
        t.setdefault("epochs", epochs)
        t.setdefault("optimizer", "adam")
        t.setdefault("schedule", "constant")
        t.setdefault("step_every", 1)
        t.setdefault("step_gamma", 0.95)
    return out


def ident(t: dict) -> tuple:
    return tuple(str(t[k]) for k in FIELDS[:13] if k != "parameters")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", default="all")
    ap.add_argument("--extra", action="append", default=[], help="one more trial as k=v,k=v (stage 4)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    todo = trials(args.stage)
    for e in args.extra:
        t = dict(kv.split("=", 1) for kv in e.split(","))
        t["stage"] = 4
        for k in ("lr", "step_gamma"):
            if k in t:
                t[k] = float(t[k])
        for k in ("batch_size", "n_train", "epochs", "step_every"):
            if k in t:
                t[k] = int(t[k])
        base = dict(optimizer="adam", schedule="constant", step_every=1, step_gamma=0.95, preprocess="zhang")
        n, epochs = SEARCH_AT.get(t["model"], (None, None))
        base.update(n_train=n, epochs=epochs)
        todo.append({**base, **t})
    done = set()
    if OUT.exists():
        with OUT.open() as f:
            done = {ident(r) for r in csv.DictReader(f)}
    new = not OUT.exists()
    for t in todo:
        if ident(t) in done:
            continue
        settings = {k: t[k] for k in ("model", "n_train", "epochs", "preprocess", "optimizer", "lr", "batch_size",
                                      "init", "schedule", "step_every", "step_gamma")}
        tmp = Path(tempfile.mkdtemp(prefix="capsearch-"))
        t0 = time.time()
        r = rote.run(out=tmp / "run", eval_every=max(1, t["epochs"] // 10), **COMMON, **settings)
        secs = time.time() - t0
        h = r.history.dropna(subset=["train_loss_full"])
        curve = [bits_from_loss(t["n_train"], x) for x in h["train_loss_full"]]
        params = int(r.result.get("parameters") or 0)
        final = float(r.result["train_loss"])
        bits = bits_from_loss(t["n_train"], final)
        row = {**t, "parameters": params, "final_loss": f"{final:.5f}", "bits": f"{bits:.0f}",
               "bits_per_parameter": f"{bits / params:.4f}" if params else "",
               "ideal_bits": f"{t['n_train'] * math.log2(10):.0f}",
               "rising": still_rising(list(h["epoch"]), curve),
               "curve_bits": " ".join(f"{b:.0f}" for b in curve), "seconds": f"{secs:.0f}"}
        shutil.rmtree(tmp, ignore_errors=True)
        with OUT.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
                new = False
            w.writerow(row)
        print(" ".join(f"{k}={row[k]}" for k in FIELDS if k != "curve_bits"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
