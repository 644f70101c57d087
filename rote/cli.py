"""The command line: parsing only. Every command is a thin call into the library."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from rote.config import RunConfig
from rote.errors import RoteError

# help for each run setting; the flag is --name-with-dashes
RUN_HELP = {
    "dataset": "dataset: mnist or fashion-mnist (default: %(default)s)",
    "n_train": "use the first N training images, validation part included (default: %(default)s)",
    "labels": "training labels: permute (the seed: permute all labels, keep the first N), random, true, "
              "partial:P (each replaced by a uniform draw with probability P), flip:P (exactly P*N changed) "
              "(default: %(default)s)",
    "inputs": "input corruption: none, shuffled-pixels, random-pixels, gaussian (default: %(default)s)",
    "model": "model: seed-cnn, mlp:512x512, cnn:K (see `rote models`) (default: %(default)s)",
    "init": "initialisation: keras (Glorot-uniform, zero bias; the seed's) or torch (default: %(default)s)",
    "dropout": "dropout before the last layer (default: %(default)s)",
    "optimizer": "adam (the seed's) or sgd with momentum (default: %(default)s)",
    "lr": "learning rate (default: %(default)s)",
    "momentum": "SGD momentum (default: %(default)s)",
    "weight_decay": "L2 weight decay (default: %(default)s)",
    "schedule": "learning-rate schedule: constant, or step (x step-gamma every step-every epochs) "
                "(default: %(default)s)",
    "step_every": "epochs between learning-rate steps (default: %(default)s)",
    "step_gamma": "learning-rate factor per step (default: %(default)s)",
    "augment_shift": "random shifts of up to this many pixels, 0 for none (default: %(default)s)",
    "batch_size": "batch size (default: %(default)s)",
    "epochs": "at most this many epochs (default: %(default)s)",
    "val_split": "hold out the LAST fraction of the N images, before shuffling, as Keras does "
                 "(default: %(default)s)",
    "stop_at": "stop once the full training part is fitted to this accuracy; 'none' runs every epoch "
               "(default: %(default)s)",
    "eval_every": "also evaluate the full training part every K epochs, 0 only when the running accuracy "
                  "reaches --stop-at (default: %(default)s)",
    "collapse_patience": "stop a run whose predictions have been one class for this many epochs; 0 never "
                         "(default: %(default)s)",
    "seed": "seed for labels, initialisation and data order (default: %(default)s)",
    "device": "auto, cpu, cuda or mps (default: %(default)s)",
    "channels_last": "channels-last memory layout, faster on CPU; same numbers (default: %(default)s)",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    defaults = RunConfig()
    g = p.add_argument_group("run settings (defaults are the seed experiment)")
    for f in fields(RunConfig):
        g.add_argument("--" + f.name.replace("_", "-"), dest="cfg_" + f.name, metavar=f.name.upper(),
                       default=None, help=RUN_HELP[f.name] % {"default": getattr(defaults, f.name)})


def _config_from(args) -> RunConfig:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return RunConfig.from_dict(overrides)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="rote", description="Can a network learn its training set by rote? Train on random labels, "
               "measure memorisation, compare with chance. `rote run` with no flags reproduces the seed "
               "experiment: a small CNN memorises 3,000 randomly labelled MNIST images.")
    from rote import __version__

    p.add_argument("--version", action="version", version=f"rote {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    r = sub.add_parser("run", help="train one model and record it (defaults: the seed experiment)",
                       description="Train one model and record it in a run directory: config.json, "
                       "history.csv (one row per epoch), labels.npy, result.json and curves.png.")
    r.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<time>-<id>/)")
    r.add_argument("--data-dir", default=None, help="directory holding the dataset's files "
                   "(default: $ROTE_DATA_DIR, then rote's cache, then download)")
    r.add_argument("--quiet", action="store_true", help="print only the summary, no per-epoch lines")
    _add_run_flags(r)

    d = sub.add_parser("data", help="fetch and list datasets", description="Fetch datasets into rote's cache "
                       "(verified against pinned SHA-256 hashes) and show what is present.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", parser_class=Parser)
    f = dsub.add_parser("fetch", help="fetch a dataset into the cache and verify it")
    f.add_argument("name", help="mnist or fashion-mnist")
    f.add_argument("--data-dir", default=None, help="verify this directory instead of fetching")
    lst = dsub.add_parser("list", help="show which datasets are present, where, and whether they verify")
    lst.add_argument("--data-dir", default=None, help="also look in this directory")

    sub.add_parser("models", help="list the registered models and their parameter counts")
    return p


def cmd_run(args) -> int:
    from rote.experiments.run import RunInterrupted, run

    cfg = _config_from(args)
    progress = None
    if sys.stdout.isatty() and not args.quiet:
        from tqdm import tqdm

        progress = lambda it: tqdm(it, leave=False, unit="batch", dynamic_ncols=True)  # noqa: E731
    log = print
    if args.quiet:
        log = lambda s: None  # noqa: E731
    try:
        run_dir, result = run(cfg, args.out, data_dir=args.data_dir, log=log, progress=progress)
    except RunInterrupted as e:
        print(f"\ninterrupted: config.json and history.csv up to the last full epoch are kept in {e.run_dir}",
              file=sys.stderr)
        return 130
    from rote.reporting.curves import plot_run  # matplotlib is slow to import; only now

    figs = plot_run(run_dir)
    if args.quiet:
        from rote.training.metrics import chance_sentence

        print(f"{result['outcome']}: train acc {result['train_acc']:.2%}, test acc {result['test_acc']:.2%} "
              f"after {result['epochs']} epochs")
        print(chance_sentence(result["test_acc"], result["chance"]))
    print(f"recorded in {run_dir}/ (config.json, history.csv, labels.npy, result.json, "
          f"{', '.join(p.name for p in figs)})")
    return 1 if result["outcome"] == "diverged" else 0


def cmd_data(args) -> int:
    from rote.data import sources

    if args.data_command == "fetch":
        path = sources.fetch(args.name, data_dir=args.data_dir, log=print)
        print(f"{args.name}: verified in {path}")
        return 0
    if args.data_command == "list":
        print(f"{'dataset':<15} {'verified':<9} where")
        for name in sources.DATASETS:
            st = sources.dataset_status(name, data_dir=args.data_dir)
            print(f"{name:<15} {'yes' if st['verified'] else 'no':<9} {st['path'] or '-'}")
        return 0
    raise RoteError("rote data needs an action: fetch NAME or list")


def cmd_models(args) -> int:
    from rote.models import available_models, count_parameters, create_model

    for name, help in available_models().items():
        print(f"{name:<10} {count_parameters(create_model(name)):>10,} parameters  {help}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"run": cmd_run, "data": cmd_data, "models": cmd_models}[args.command](args)
    except RoteError as e:
        print(f"rote: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
