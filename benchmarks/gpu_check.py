"""A GPU check in one command (about 5 minutes on one GPU): does rote run on CUDA, does a
group of stacked models equal the same runs one by one there, and what does stacking buy?

    python benchmarks/gpu_check.py [--device cuda] [--ks 1,8,32,128] [--epochs 3]

Prints:
  1. the seed protocol on the GPU for a few epochs (seconds per epoch, images/s);
  2. a group of K = 8 seed-protocol runs against the same 8 runs one by one: the largest
     difference in any history column, and PASS/FAIL at the tolerance the CPU test uses;
  3. model-epochs per second for groups of K = 1, 8, 32, 128 (training steps only, the
     device synchronised; CUDA events around each epoch give the second column, which
     includes evaluation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rote.config import RunConfig, resolve_device  # noqa: E402
from rote.data.prepare import prepare  # noqa: E402
from rote.data.sources import load_dataset  # noqa: E402
from rote.training.loop import train_many  # noqa: E402

COLUMNS = ("loss", "acc", "val_loss", "val_acc", "train_loss_full", "train_acc_full")
TOLERANCE = 2e-4  # as tests/test_group.py on the CPU


N_TRAIN = 3000


def configs(k: int, epochs: int, device: str, **over) -> list[RunConfig]:
    return [RunConfig.from_dict({"n_train": N_TRAIN, "epochs": epochs, "stop_at": "none", "collapse_patience": 0, "seed": s,
                                 "device": device, "record_examples": "false", **over}) for s in range(k)]


def timed(cfgs, datas, device) -> tuple[list[float], list[float]]:
    """(training seconds per epoch, event-timed seconds per epoch including evaluation), warm-up dropped."""
    marks = []

    def on_epoch(j, rec):
        if j == 0:
            ev = torch.cuda.Event(enable_timing=True) if device.type == "cuda" else None
            if ev is not None:
                ev.record()
            marks.append(ev or time.perf_counter())

    start = torch.cuda.Event(enable_timing=True) if device.type == "cuda" else None
    if start is not None:
        start.record()
    else:
        start = time.perf_counter()
    res = train_many(cfgs, datas, device=device, on_epoch=on_epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        ev_secs = [a.elapsed_time(b) / 1e3 for a, b in zip([start] + marks[:-1], marks)]
    else:
        ev_secs = [b - a for a, b in zip([start] + marks[:-1], marks)]
    return [r.seconds for r in res[0].history[1:]], ev_secs[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ks", default="1,8,32,128")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement (after one warm-up)")
    ap.add_argument("--n-train", type=int, default=3000, help="images per run (3000: the seed protocol)")
    args = ap.parse_args()
    global N_TRAIN
    N_TRAIN = args.n_train
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"# rote GPU check  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  device {device} ({name})")
    mnist = load_dataset("mnist", log=lambda s: None)

    # 1. the seed protocol, one model
    cfg = configs(1, args.epochs + 1, device.type)
    secs, _ = timed(cfg, [prepare(mnist, cfg[0])], device)
    med = statistics.median(secs)
    print(f"\n1. seed protocol on {device.type}: {med:.3f} s/epoch (min {min(secs):.3f}), {cfg[0].n_train - cfg[0].n_val:,} images per epoch, "
          f"{(cfg[0].n_train - cfg[0].n_val) / med:,.0f} images/s")

    # 2. a group of 8 against the same runs one by one
    cfgs = configs(8, 4, device.type, eval_every=1, channels_last="false")  # one layout on both sides
    datas = [prepare(mnist, c) for c in cfgs]
    grouped = train_many(cfgs, datas, device=device)
    worst = np.zeros(4)  # the largest difference in any history column, by epoch
    for c, d, g in zip(cfgs, datas, grouped):
        alone = train_many([c], [d], device=device)[0]
        a = np.array([[getattr(r, k) for k in COLUMNS] for r in g.history], dtype=float)
        b = np.array([[getattr(r, k) for k in COLUMNS] for r in alone.history], dtype=float)
        worst = np.maximum(worst, np.abs(a - b).max(axis=1))
    # Stacked and single convolutions sum in different orders; the last-bit differences this leaves
    # grow as training goes on, so the first epoch is held to the test suite's tolerance.
    verdict = "PASS" if worst[0] <= TOLERANCE else "FAIL"
    print(f"2. group of 8 vs one by one: largest difference by epoch "
          f"{', '.join(f'{w:.1e}' for w in worst)} ({verdict}: epoch 1 within {TOLERANCE:g})")

    # 3. model-epochs per second for groups of K
    print(f"\n3. {'K':>4} {'s/group-epoch':>14} {'min-max':>15} {'model-epochs/s':>15} {'x K=1':>7} "
          f"{'events s/epoch':>15}")
    base = None
    for k in (int(s) for s in args.ks.split(",")):
        cfgs = configs(k, args.epochs + 1, device.type)
        secs, ev = timed(cfgs, [prepare(mnist, c) for c in cfgs], device)
        med = statistics.median(secs)
        rate = k / med
        base = base or rate
        print(f"   {k:>4} {med:14.3f} {min(secs):7.3f}-{max(secs):<7.3f} {rate:15.2f} {rate / base:7.1f} "
              f"{statistics.median(ev):15.3f}")
    print("\nseconds: training steps only, device synchronised; events: CUDA events between epochs, with evaluation.")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
