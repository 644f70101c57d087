"""rote on a CPU that is doing other work: seconds per epoch beside 0, 1 and 2 competing processes.

The competitors are PyTorch processes multiplying 256 x 256 matrices in a loop
with 2 threads each (or 1), as another user's training would. Beside them,
rote trains in a fresh process with

  before   PyTorch's defaults, rote's defaults until now: one thread per core,
           OpenMP threads that spin while they wait (OMP_WAIT_POLICY unset);
  passive  the same threads, but OpenMP threads sleep when they wait;
  after    rote's defaults now: sleeping threads, the usable cores' threads,
           and one thread for a tiny dense model (rote.threads.use_threads).

Workloads: the seed protocol at a small size (the seed CNN, Adam, batch 32,
--seed-images training images) and mlp:16, whose epoch on 54,000 images is
given from the per-step time of shorter epochs (--mlp-images) times the 1,688
steps of 54,000 images. Each measurement is one warm-up epoch and then
--epochs timed ones (training steps only, as rote's history records them);
every condition is repeated --repeats times, the settings interleaved within
each repeat so that drifting machine load hits all alike. The table gives the
median and the range, and the slowdown of each median against the same
setting alone.

    python benchmarks/contention.py [--repeats 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("before", "passive", "after")
STEPS_54K = -(-54_000 // 32)


def worker(setting: str, workload: str, epochs: int, n_images: int) -> None:
    """In a fresh process: train and print {'seconds': [...], 'threads': n, 'steps': s} as one JSON line."""
    if setting == "before":
        os.environ.pop("OMP_WAIT_POLICY", None)
        import torch  # first, so that rote leaves OpenMP's wait policy as PyTorch has it
    elif setting == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.path.insert(0, str(ROOT))
    import torch

    import rote  # noqa: F401
    from rote.config import RunConfig
    from rote.data.prepare import prepare
    from rote.data.sources import load_dataset
    from rote.threads import use_threads
    from rote.training.loop import train_many

    model = "seed-cnn" if workload == "seed" else "mlp:16"
    if setting == "after":  # as `rote run` chooses: rote.threads' default for this model's step
        from rote.models import dense_step_macs

        use_threads(None, warn=lambda s: None, step_macs=dense_step_macs(model, (1, 28, 28), 10, batch=32))
    cfg = RunConfig.from_dict({"model": model, "n_train": round(n_images / 0.9), "epochs": epochs + 1,
                               "stop_at": "none", "collapse_patience": 0, "record_examples": "false",
                               "device": "cpu"})
    data = prepare(load_dataset("mnist", log=lambda s: None), cfg)
    # the final test-set pass is not what is timed: keep it short
    data = dataclasses.replace(data, x_test=data.x_test[:200], y_test=data.y_test[:200])
    res = train_many([cfg], [data])[0]
    print(json.dumps({"seconds": [r.seconds for r in res.history[1:]], "threads": torch.get_num_threads(),
                      "steps": -(-len(data.y_fit) // 32), "images": len(data.y_fit)}))


def compete(threads: int) -> None:
    """A competing process: PyTorch matrix products in a loop, forever."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    while True:
        a @ b


def measure(setting: str, workload: str, args) -> dict:
    n = args.seed_images if workload == "seed" else args.mlp_images
    out = subprocess.run([sys.executable, __file__, "--worker", setting, workload, str(args.epochs), str(n)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement, after one warm-up")
    ap.add_argument("--seed-images", type=int, default=270, help="training images of the seed protocol")
    ap.add_argument("--mlp-images", type=int, default=2700, help="training images per mlp:16 epoch timed")
    ap.add_argument("--competitors", default="0,1x2,2x2,1x1,2x1",
                    help="competing processes x threads each, comma-separated (default: %(default)s)")
    ap.add_argument("--workloads", default="seed,mlp16")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--compete", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], int(args.worker[2]), int(args.worker[3]))
    if args.compete:
        return compete(args.compete)

    conditions = []
    for c in args.competitors.split(","):
        k, t = (c.split("x") + ["0"])[:2] if c != "0" else ("0", "0")
        conditions.append((int(k), int(t)))
    workloads = args.workloads.split(",")
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.machine())
    print(f"# rote contention benchmark  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  "
          f"{os.cpu_count()} CPUs ({cpu}, {torch.backends.cpu.get_cpu_capability()})  "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"# {' '.join(sys.argv)}")
    times: dict = {}
    threads: dict = {}
    for rep in range(args.repeats):
        for k, t in conditions:
            procs = [subprocess.Popen([sys.executable, __file__, "--compete", str(t)]) for _ in range(k)]
            try:
                time.sleep(1.5 if k else 0)  # the competitors are up and busy
                for w in workloads:
                    for s in SETTINGS:
                        r = measure(s, w, args)
                        per_epoch = statistics.median(r["seconds"])
                        if w == "mlp16":
                            per_epoch *= STEPS_54K / r["steps"]
                        times.setdefault((w, k, t, s), []).append(per_epoch)
                        threads[(w, k, t, s)] = r["threads"]
                        print(f"  repeat {rep + 1}: {w:6s} {k} x {t} threads  {s:8s} {per_epoch:8.3f} s/epoch "
                              f"({r['threads']} threads)", file=sys.stderr, flush=True)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
        table(times, threads, conditions, workloads, args, rep + 1)


def table(times, threads, conditions, workloads, args, repeats: int) -> None:
    print(f"\nafter {repeats} repeat(s):")
    print(f"{'workload':<22} {'competitors':<18} {'setting':<8} {'threads':>7} {'s/epoch':>9} {'min-max':>17} "
          f"{'slowdown':>9}")
    for w in workloads:
        name = (f"seed CNN, {args.seed_images} img" if w == "seed" else "mlp:16, 54,000 img")
        for k, t in conditions:
            who = "none" if k == 0 else f"{k} x {t} thread{'s' * (t > 1)}"
            for s in SETTINGS:
                v = times[(w, k, t, s)]
                med, alone = statistics.median(v), statistics.median(times[(w, 0, 0, s)])
                print(f"{name:<22} {who:<18} {s:<8} {threads[(w, k, t, s)]:>7} {med:9.3f} "
                      f"{min(v):8.3f}-{max(v):<8.3f} {med / alone:8.1f}x")
    print(f"\nmlp:16 seconds per epoch are for 54,000 images: the median epoch of {args.mlp_images} images "
          f"x {STEPS_54K} / its steps. Slowdown: against the same setting with no competitor. "
          f"load average now: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
