"""What rote does on this machine, against the hardware and a plain PyTorch loop.

Measures, in one process:
  1. the fp32 matrix-multiply peak (torch.mm on square matrices; best size);
  2. rote's seconds per epoch on the seed protocol (2,700 images, batch 32,
     the seed CNN, Adam), through rote's own training loop;
  3. the same model and protocol as a plain PyTorch DataLoader loop
     (TensorDataset, shuffle=True, batch 32), the usual way to write it;
  4. (with --group) model-epochs per second for K models trained at once;
  5. (with --tiny) model-images per second of mlp:16, alone on 54,000 images
     and in groups of K (each member on --tiny-images images), through the
     group path as it was (vmap, two-dimensional gathers, Adam op by op) and
     as it is (batched products, flat gathers, fused Adam), interleaved.
Each timing is repeated; the table shows the median and the spread (min-max).
GFLOP/s counts the multiply-adds of the convolutions and dense layers,
forward and backward (backward = 2x forward), as 2 FLOPs each.

    python benchmarks/bench.py [--epochs 5] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rote  # noqa: E402,F401  (first: OpenMP's wait policy is set before torch loads it, as for `rote run`)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rote.config import RunConfig  # noqa: E402
from rote.data.prepare import prepare  # noqa: E402
from rote.data.sources import load_dataset  # noqa: E402
from rote.models import create_model  # noqa: E402
from rote.config import resolve_device  # noqa: E402
from rote.training.checkpoint import DEFAULT_INTERVAL  # noqa: E402
from rote.training.loop import train_many  # noqa: E402


def seed_cnn_flops_per_image() -> float:
    """Forward multiply-adds x 2 of the seed CNN on one 28x28 image, x3 for forward + backward."""
    macs = (28 * 28 * 32 * 1 * 9 + 26 * 26 * 32 * 32 * 9 + 13 * 13 * 64 * 32 * 9 + 11 * 11 * 64 * 64 * 9
            + 1600 * 512 + 512 * 10)
    return 3 * 2 * macs


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, repeats: int) -> list[float]:
    best = None
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        for _ in range(3):
            a @ b
        sync(device)
        times = []
        for _ in range(max(5, repeats)):
            t = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t)
        rates = [2 * n ** 3 / t / 1e9 for t in times]
        if best is None or statistics.median(rates) > statistics.median(best):
            best = rates
    return best


def rote_epochs(dataset, device, epochs: int, k: int = 1, cpu: list | None = None, **over) -> list[float]:
    """Seconds per (group-)epoch of k seed-protocol runs trained together; the first epoch warms up.
    ``cpu``, if given, gets this process's CPU seconds per epoch (from one epoch's end to the next's,
    so with that epoch's evaluation), for a machine where other work takes a share of the cores."""
    cfgs = [RunConfig.from_dict({"epochs": epochs + 1, "stop_at": "none", "collapse_patience": 0, "seed": s,
                                 "device": device.type, **over}) for s in range(k)]
    marks = []

    def on_epoch(j, rec):
        if j == 0:
            marks.append(time.process_time())

    res = train_many(cfgs, [prepare(dataset, c) for c in cfgs], device=device, on_epoch=on_epoch)
    if cpu is not None:
        cpu += [b - a for a, b in zip(marks, marks[1:])]
    return [r.seconds for r in res[0].history[1:]]


def dataloader_epochs(dataset, device, epochs: int) -> list[float]:
    """The usual PyTorch loop: a DataLoader over a TensorDataset, tensors moved per batch."""
    from torch.utils.data import DataLoader, TensorDataset

    cfg = RunConfig()
    data = prepare(dataset, cfg)
    ds = TensorDataset(torch.from_numpy(data.x_fit), torch.from_numpy(data.y_fit))
    loader = DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = create_model("seed-cnn", in_shape=data.x_fit.shape[1:], classes=data.classes,
                         generator=torch.Generator().manual_seed(0)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs + 1):
        sync(device)
        t = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item()  # the usual per-step logging sync
        sync(device)
        times.append(time.perf_counter() - t)
    return times[1:]


class OldGroupPath:
    """The group path as it was before rote.training.stacked: every stacked model through vmap, batches
    gathered by advanced indexing over (member, image), Adam op by op (for timing against it)."""

    def __enter__(self):
        import rote.training.loop as loop
        import rote.training.members as members

        self.saved = members.stacked_forward, loop.take, members.group_optimizer
        members.stacked_forward = lambda model: None
        loop.take = lambda x, rows, idx: x[rows, idx]
        members.group_optimizer = lambda cfg, params, make: make(cfg, params)

    def __exit__(self, *exc):
        import rote.training.loop as loop
        import rote.training.members as members

        members.stacked_forward, loop.take, members.group_optimizer = self.saved


def tiny_rows(dataset, device, epochs: int, ks: list[int], images: int, repeats: int = 2) -> list[str]:
    """Model-images per second of mlp:16: alone on 54,000 images, and in groups of K on ``images`` each,
    the group path as it was and as it is, interleaved."""
    import contextlib

    lines = []
    for k in ks:
        n = 60_000 if k == 1 else round(images / 0.9)
        over = dict(model="mlp:16", n_train=n, record_examples="false")
        was, now, was_cpu, now_cpu = [], [], [], []
        for _ in range(repeats):
            with OldGroupPath():
                was += rote_epochs(dataset, device, epochs, k, cpu=was_cpu, **over)
            with contextlib.nullcontext():
                now += rote_epochs(dataset, device, epochs, k, cpu=now_cpu, **over)
        n_fit = round(n * 0.9)
        steps = -(-n_fit // 32)
        for what, secs, cpu in (("as it was", was, was_cpu), ("now", now, now_cpu)):
            med = statistics.median(secs)
            label = f"mlp:16 {'alone' if k == 1 else f'K={k}'}, {what}"
            lines.append(f"{label:<38} {med:8.3f} {min(secs):7.3f}-{max(secs):<7.3f} {k * n_fit / med:9,.0f} "
                         f"{1000 * med / steps:8.3f} ms/step ({k} x {n_fit:,} img)   CPU s/epoch "
                         f"{statistics.median(cpu):.3f}: {k * n_fit / statistics.median(cpu):,.0f} mod-img/CPU-s")
    return lines


def record_seconds(n_fit: int, batch: int, classes: int, device, repeats: int = 5) -> list[float]:
    """Seconds per epoch of the per-example record alone (its work on every batch's logits, and the
    copy to the host at the end of the epoch), timed apart from training, whose drift hides a 1% cost."""
    from rote.training.recorder import ExampleRecorder

    rec = ExampleRecorder(1, n_fit, 1000, device)
    out = torch.randn(1, batch, classes, device=device)
    y = torch.randint(0, classes, (1, batch), device=device)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        rec.start_epoch(1)
        for i in range(0, n_fit, batch):
            idx = torch.arange(i, min(i + batch, n_fit), device=device)[None]
            rec.batch(idx, out[:, :idx.shape[1]], y[:, :idx.shape[1]])
        rec.end_epoch(1, [])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times[1:]


def checkpoint_seconds(dataset, device, repeats: int = 5, **over) -> tuple[list[float], list[float]]:
    """(seconds of the copy of the training state that every epoch makes, seconds of one checkpoint written
    to disk) for a seed-protocol run: the two costs of checkpointing, timed apart from training."""
    import tempfile
    from pathlib import Path

    from rote.training.checkpoint import Checkpoint
    from rote.training.loop import _Loop

    cfg = RunConfig.from_dict({"stop_at": "none", "device": device.type, **over})
    loop = _Loop([cfg], [prepare(dataset, cfg)], device, keep_weights=False)
    loop.run_epoch(None, None)  # optimiser state and one epoch of history, as in a real checkpoint
    copies, saves = [], []
    with tempfile.TemporaryDirectory() as d:
        ckpt = Checkpoint(Path(d) / "checkpoint.pt", [cfg.key()])
        for _ in range(repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            state = loop.state()
            sync(device)
            t1 = time.perf_counter()
            ckpt.save(state)
            t2 = time.perf_counter()
            copies.append(t1 - t0)
            saves.append(t2 - t1)
    return copies[1:], saves[1:]


def row(name, secs, images, flops_per_image, peak):
    med = statistics.median(secs)
    gflops = images * flops_per_image / med / 1e9
    return (f"{name:<38} {med:8.3f} {min(secs):7.3f}-{max(secs):<7.3f} {images / med:9,.0f} {gflops:8.1f} "
            f"{100 * gflops / peak:6.1f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per measurement (after one warm-up)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the matmul timing")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-dataloader", action="store_true")
    ap.add_argument("--group", type=str, default="1,4", help="comma-separated K for multi-model groups "
                    "(default: 1,4; on a GPU try 1,8,32,128; empty to skip)")
    ap.add_argument("--tiny", type=str, default="1,8,32,64", help="comma-separated K for the mlp:16 rows "
                    "(1: alone on 54,000 images; empty to skip)")
    ap.add_argument("--tiny-images", type=int, default=5400, help="training images of each member of a group")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: rote's choice, rote.threads)")
    ap.add_argument("--only-tiny", action="store_true", help="only the mlp:16 rows")
    args = ap.parse_args()

    from rote.threads import use_threads

    use_threads(args.threads)
    device = resolve_device(args.device)
    dataset = load_dataset("mnist", log=lambda s: None)
    print(f"# rote benchmark  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  device {device}  "
          f"threads {torch.get_num_threads()}  cpu {platform.processor() or platform.machine()}  "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    if args.tiny:
        print(f"\n{'mlp:16 (model-images/s)':<38} {'median':>8} {'min-max':>15} {'mod-img/s':>9}")
        for line in tiny_rows(dataset, device, args.epochs, [int(k) for k in args.tiny.split(",")], args.tiny_images):
            print(line, flush=True)
        print("seconds are per (group-)epoch, training steps only; model-images/s = K x images / seconds.\n")
    if args.only_tiny:
        return
    peaks = matmul_peak(device, args.repeats)
    peak = statistics.median(peaks)
    n_fit = 2700
    fpi = seed_cnn_flops_per_image()
    print(f"# seed protocol: {n_fit} images/epoch, {n_fit * fpi / 1e9:.0f} GFLOP/epoch; fp32 floor at this peak: "
          f"{n_fit * fpi / peak / 1e9:.2f} s/epoch")
    print()
    print(f"{'measurement':<38} {'median':>8} {'min-max':>15} {'img/s':>9} {'GFLOP/s':>8} {'%peak':>7}")
    print(f"{'fp32 matmul peak (torch.mm)':<38} {'':>8} {'':>15} {'':>9} {peak:8.1f} {100.0:6.1f}%")
    # the per-example record on and off, interleaved so that drifting machine load hits both alike
    on, off = [], []
    for _ in range(2):
        off += rote_epochs(dataset, device, args.epochs, record_examples="false")
        on += rote_epochs(dataset, device, args.epochs, record_examples="true")
    print(row("rote, seed protocol, no per-example record", off, n_fit, fpi, peak))
    print(row("rote, seed protocol, per-example record", on, n_fit, fpi, peak)
          + f"   whole epochs: {100 * (statistics.median(on) / statistics.median(off) - 1):+.1f}%")
    alone = statistics.median(record_seconds(n_fit, 32, 10, device))
    print(f"{'the per-example record alone':<38} {alone:8.3f} {'':>15} {'':>9} {'':>8} {'':>7}   "
          f"{100 * alone / statistics.median(off):.1f}% of an epoch")
    copy, save = (statistics.median(v) for v in checkpoint_seconds(dataset, device))
    cost = copy / statistics.median(off) + save / DEFAULT_INTERVAL
    print(f"{'checkpoints (default interval)':<38} {copy + save:8.3f} {'':>15} {'':>9} {'':>8} {'':>7}   "
          f"{100 * cost:.2f}% of training: a {copy * 1e3:.1f} ms copy each epoch, a {save * 1e3:.0f} ms write "
          f"every {DEFAULT_INTERVAL:.0f} s")
    print(row("rote, seed protocol (channels-last)", rote_epochs(dataset, device, args.epochs, channels_last="true",
                                                             record_examples="false"), n_fit, fpi, peak))
    print(row("rote, seed protocol (contiguous)", rote_epochs(dataset, device, args.epochs, channels_last="false",
                                                          record_examples="false"),
              n_fit, fpi, peak))
    if not args.skip_dataloader:
        print(row("plain PyTorch DataLoader loop", dataloader_epochs(dataset, device, args.epochs), n_fit, fpi, peak))
    if args.group:
        for k in (int(s) for s in args.group.split(",")):
            secs = rote_epochs(dataset, device, args.epochs, k, channels_last="false", record_examples="false")
            med = statistics.median(secs)
            gflops = k * n_fit * fpi / med / 1e9
            print(f"{f'group of K={k} models (model-epochs/s {k / med:.2f})':<38} {med:8.3f} "
                  f"{min(secs):7.3f}-{max(secs):<7.3f} {k * n_fit / med:9,.0f} {gflops:8.1f} {100 * gflops / peak:6.1f}%")
    print("\nseconds are per epoch (per group-epoch for groups), training steps only, device synchronised.")


if __name__ == "__main__":
    main()
