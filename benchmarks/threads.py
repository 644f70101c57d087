"""One thread or two: milliseconds per training step of small and large models through rote's loop.

rote.threads keeps dense models whose step is below SMALL_STEP_MACS forward multiply-adds on one
thread; this is the measurement behind that line. Each model trains on the seed protocol's split
(batch 32, Adam) for one warm-up and --epochs timed epochs, with 1 and then 2 torch threads; the
table shows the median milliseconds per step and their ratio (above 1: two threads are slower).

    python benchmarks/threads.py [--epochs 2]

Run it on an otherwise idle machine: it measures how threads share the cores.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rote  # noqa: E402,F401  (first: OpenMP's wait policy is set before torch loads it)
import torch  # noqa: E402

from bench import rote_epochs  # noqa: E402
from rote.data.sources import load_dataset  # noqa: E402
from rote.models import dense_step_macs  # noqa: E402

CASES = [("mlp:16", 1, 3000), ("mlp:128", 1, 3000), ("mlp:512", 1, 3000), ("mlp:2048", 1, 3000),
         ("mlp:16", 8, 3000), ("mlp:16", 32, 3000), ("cnn:2", 1, 1000), ("cnn:8", 1, 1000), ("seed-cnn", 1, 500)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    ds = load_dataset("mnist")
    dev = torch.device("cpu")
    print(f"# rote threads benchmark  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  "
          f"{platform.machine()}  {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'model':<10} {'K':>3} {'step MACs':>11} {'1 thread ms':>12} {'2 threads ms':>13} {'2t / 1t':>8}")
    for model, k, n in CASES:
        ms = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            secs = rote_epochs(ds, dev, args.epochs, k, model=model, n_train=n, record_examples="false")
            ms.append(1000 * statistics.median(secs) / -(-round(n * 0.9) // 32))
        macs = dense_step_macs(model, (1, 28, 28), 10, batch=32, members=k)
        print(f"{model:<10} {k:>3} {'conv' if macs is None else f'{macs / 1e6:.1f} M':>11} {ms[0]:12.3f} "
              f"{ms[1]:13.3f} {ms[1] / ms[0]:8.2f}", flush=True)


if __name__ == "__main__":
    main()
