"""The command line: parsing only. Every command is a thin call into the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from rote.config import RunConfig
from rote.errors import RoteError

# help for each run setting; the flag is --name-with-dashes
RUN_HELP = {
    "dataset": "dataset: mnist, fashion-mnist, cifar10, or npz:PATH (your own: one .npz with x_train, y_train, "
               "x_test, y_test) (default: %(default)s)",
    "n_train": "use the first N training images, validation part included (default: %(default)s)",
    "labels": "training labels: permute (the seed: permute all labels, keep the first N), random, true, "
              "partial:P (each replaced by a uniform draw with probability P), flip:P (exactly P*N changed) "
              "(default: %(default)s)",
    "inputs": "input corruption: none, shuffled-pixels, random-pixels, gaussian (default: %(default)s)",
    "label_seed": "draw the labels from this seed instead of --seed, so that runs of several seeds share one "
                  "corrupted label set; none: --seed (default: %(default)s)",
    "subset": "train on a random subset of this share of the training part, drawn from --seed, and write "
              "membership.npz (the final model on every image of the part) for Feldman & Zhang's memorisation "
              "scores; none: the whole part (default: %(default)s)",
    "preprocess": "none, or zhang: Zhang et al.'s centre crop to 28x28 and per-image whitening, train and test "
                  "(default: %(default)s)",
    "model": "model: seed-cnn, mlp:512x512, cnn:K (see `rote models`), or your own factory as "
             "package.module:function, called as function(in_shape=(C, H, W), classes=K) (default: %(default)s)",
    "init": "initialisation: keras (Glorot-uniform, zero bias; the seed's) or torch (default: %(default)s)",
    "dropout": "dropout before the last layer (default: %(default)s)",
    "optimizer": "adam (the seed's, as PyTorch computes it), adam-keras1 (exactly Keras 1.2's update) or sgd "
                 "with momentum (default: %(default)s)",
    "loss": "ce (exact cross-entropy) or keras1 (Keras 1.2's: probabilities clipped to [1e-7, 1-1e-7], so "
            "confident mistakes get no gradient) (default: %(default)s)",
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
    "collapse_patience": "call a run collapsed and stop it once the dead-network check (run on epochs that look "
                         "like a constant predictor) has found it dead this many times in a row; 0 never "
                         "(default: %(default)s)",
    "seed": "seed for labels, initialisation and data order (default: %(default)s)",
    "device": "auto, cpu, cuda or mps (default: %(default)s)",
    "channels_last": "channels-last memory layout; without either flag, auto: channels-last for one model on a "
                     "CPU, where it is faster; it changes the last bits of a convolution (default: auto)",
    "record_examples": "write examples.npz, scores.csv and detection.csv: every training example at every "
                       "presentation, its memorisation scores, and how well each finds the changed labels "
                       "(default: %(default)s)",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    defaults = RunConfig()
    g = p.add_argument_group("run settings (defaults are the seed experiment)")
    for f in fields(RunConfig):
        if f.name == "channels_last":  # an optional switch: a pair of flags, auto when neither is given
            m = g.add_mutually_exclusive_group()
            m.add_argument("--channels-last", dest="cfg_channels_last", action="store_const", const="true",
                           default=None, help=RUN_HELP[f.name])
            m.add_argument("--no-channels-last", dest="cfg_channels_last", action="store_const", const="false",
                           help="contiguous (channels-first) memory layout")
            continue
        g.add_argument("--" + f.name.replace("_", "-"), dest="cfg_" + f.name, metavar=f.name.upper(),
                       default=None, help=RUN_HELP[f.name] % {"default": getattr(defaults, f.name)})


def _config_from(args) -> RunConfig:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return RunConfig.from_dict(overrides)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def nonnegative_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {n}")
    return n


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
    r.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                   help="also log each epoch's scalars for TensorBoard in DIR (needs the tensorboard package)")
    r.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: the cores this "
                   "process may use, less those busy with other work); changes the speed, and for convolutions the last bits of "
                   "the numbers: give it to rerun a run bit for bit")
    _add_run_flags(r)

    d = sub.add_parser("data", help="fetch and list datasets", description="Fetch datasets into rote's cache "
                       "(verified against pinned hashes) and show what is present.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", parser_class=Parser)
    f = dsub.add_parser("fetch", help="fetch a dataset into the cache and verify it")
    f.add_argument("name", help="mnist, fashion-mnist or cifar10")
    f.add_argument("--data-dir", default=None, help="verify this directory instead of fetching")
    lst = dsub.add_parser("list", help="show which datasets are present, where, and whether they verify")
    lst.add_argument("--data-dir", default=None, help="also look in this directory")

    sw = sub.add_parser("sweep", help="run a sweep file into a result store; rerun to resume",
                        description="Expand a sweep file (a base run, a grid over run settings, seeds) and run "
                        "every run not yet in the store. Kill it at any moment and rerun: finished runs are kept, "
                        "unfinished ones are run again, none twice.")
    sw.add_argument("file", help="sweep file (YAML), or the name of a shipped study (see `rote studies`)")
    sw.add_argument("--out", type=Path, default=None, help="store directory (default: sweeps/<name>/)")
    sw.add_argument("--jobs", type=positive_int, default=None, help="runs at once in local processes "
                    "(default on a CPU: 1 or one per core, whichever measured faster here; one on a GPU)")
    sw.add_argument("--group", type=positive_int, default=None, help="train up to K compatible runs at once as one "
                    "batched model (default: 1 on CPU, where it does not pay; 32 on a GPU)")
    sw.add_argument("--threads", type=positive_int, default=None, help="CPU threads per process (default: the free "
                    "cores shared out among the processes); changes the speed, and for convolutions the last bits")
    sw.add_argument("--measure-packing", action="store_true", help="measure again whether one process with every "
                    "core's thread or one single-threaded process per core is faster here (the default --jobs; "
                    "measured once per machine and model, then cached)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local", help="where runs execute "
                    "(ray: on a Ray cluster, needs `pip install 'rote-memorization[ray]'`) (default: local)")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    sw.add_argument("--retries", type=nonnegative_int, default=2, help="times a run lost with its worker process "
                    "or node is retried (default: %(default)s)")
    sw.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    sw.add_argument("--dry-run", action="store_true", help="show the plan and the estimate, run nothing")
    sw.add_argument("--no-estimate", action="store_true", help="skip the time estimate")
    sw.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                    help="also log each run's scalars per epoch for TensorBoard, one subdirectory of DIR per run key "
                    "(needs the tensorboard package)")

    sub.add_parser("studies", help="list the studies shipped with rote (run one with `rote sweep NAME`)")

    for name, what in (("table", "print and write the summary table of a sweep (summary.csv, summary.md; "
                                 "memorization.csv for runs on a subset)"),
                       ("plot", "draw the figures of a sweep from its store, or redraw one run's (PNG and SVG)"),
                       ("report", "write one self-contained HTML report of a sweep")):
        c = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ". Reads only the store.")
        c.add_argument("sweep_dir", type=Path, help="the sweep's store directory (e.g. sweeps/corruption)"
                       + (", or a run directory (from `rote run`)" if name == "plot" else ""))
        c.add_argument("--out", type=Path, default=None, help="where to write (default: inside the store)")

    sub.add_parser("models", help="list the registered models and their parameter counts")
    p.subparsers = sub.choices  # for errors in a subcommand's own words (main)
    return p


def cmd_run(args) -> int:
    from rote.experiments.run import RunInterrupted, run

    cfg = _config_from(args)
    progress = None
    if sys.stdout.isatty() and not args.quiet:
        from tqdm import tqdm

        progress = lambda it: tqdm(it, leave=False, unit="batch", dynamic_ncols=True)  # noqa: E731
    log = (lambda s: None) if args.quiet else print
    tb = None
    if args.tensorboard is not None:
        from rote.experiments.tracking import TensorBoardLogger

        tb = TensorBoardLogger(args.tensorboard, cfg)  # checks the package before anything trains
    from rote.threads import use_threads

    warning = []
    use_threads(args.threads, warn=warning.append)

    def log_run(line: str) -> None:  # the oversubscription warning once the run has passed its checks
        if line.startswith("rote ") and warning:
            print(warning.pop(), file=sys.stderr)
        log(line)

    try:
        run_dir, result = run(cfg, args.out, data_dir=args.data_dir, log=log_run, progress=progress,
                              on_epoch=tb and tb.on_epoch)
    except RunInterrupted as e:
        print(f"\ninterrupted: config.json and history.csv up to the last full epoch are kept in {e.run_dir}",
              file=sys.stderr)
        return 130
    finally:
        if tb is not None:
            tb.close()
    from rote.reporting.curves import plot_run  # matplotlib is slow to import; only now

    plot_run(run_dir)
    if args.quiet:
        from rote.training.metrics import chance_sentence

        print(f"{result['outcome']}: train acc {result['train_acc']:.2%}, test acc {result['test_acc']:.2%} "
              f"after {plural(result['epochs'], 'epoch')}")
        print(chance_sentence(result["test_acc"], result["chance"]))
    print(f"recorded in {run_dir}/ ({', '.join(_written(run_dir))})")
    if tb is not None:
        print(f"TensorBoard: tensorboard --logdir {args.tensorboard}")
    return 1 if result["outcome"] == "diverged" else 0


def _written(run_dir: Path) -> list[str]:
    """The files a run directory holds, in the order its layout lists them (rote.experiments.record)."""
    order = ["config.json", "labels.npy", "history.csv", "examples.npz", "scores.csv", "detection.csv",
             "result.json", "curves.png", "curves.svg"]
    names = {p.name for p in Path(run_dir).iterdir() if p.is_file()}
    return [n for n in order if n in names] + sorted(names - set(order))


def cmd_data(args) -> int:
    from rote.data import registry, sources

    if args.data_command == "fetch":
        path = sources.fetch(args.name, data_dir=args.data_dir, log=print)
        print(f"{args.name}: verified in {path}")
        return 0
    if args.data_command == "list":
        print(f"{'dataset':<15} {'verified':<9} where")
        for name in registry.DATASETS:
            st = sources.dataset_status(name, data_dir=args.data_dir)
            print(f"{name:<15} {'yes' if st['verified'] else 'no':<9} {st['path'] or '-'}")
        return 0
    raise RoteError("rote data needs an action: fetch NAME or list")


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_sweep(args) -> int:
    from tqdm import tqdm

    from rote.experiments import execute
    from rote.experiments.sweep import load_sweep

    from rote.experiments.studies import resolve_study

    sweep = load_sweep(resolve_study(args.file))
    out = args.out or Path("sweeps") / sweep.name
    plan = execute.plan(sweep, out, data_dir=args.data_dir)
    tb = None
    if args.tensorboard is not None:
        from rote.experiments.tracking import require_tensorboard

        require_tensorboard()
        tb = args.tensorboard
    print(f"sweep '{sweep.name}': {plural(len(sweep.configs), 'run')} ({plural(len(sweep.conditions()), 'condition')}"
          f" x {plural(len(sweep.seeds), 'seed')}); {len(plan.done)} already in {out}, {len(plan.todo)} to run")
    if args.measure_packing and plan.todo and args.backend == "local":
        from rote.experiments.packing import plan_jobs

        plan_jobs(plan, args.group or 1, remeasure=True, log=print)
    if plan.todo and not args.no_estimate:
        for line in estimate_lines(execute.estimate(plan, jobs=args.jobs, group=args.group, backend=args.backend,
                                                    data_dir=args.data_dir)):
            print(line)
    if args.dry_run:
        return 0
    bar = tqdm(total=len(plan.todo), unit="run", dynamic_ncols=True, disable=None if plan.todo else True)
    names = condition_names(sweep)

    def on_result(r, counts):
        name = names.get(r["key"], r["key"])
        if tb is not None and r["status"] == "done":  # from the record, whichever process or machine trained it
            from rote.experiments.tracking import log_record

            log_record(tb / r["key"], plan.store.record_dir(r["key"]))
        if r["status"] == "failed":
            bar.write(f"run {name} ({r['key']}) failed: {r['error']}")
        if bar.disable:  # not a terminal: one line per run instead of a bar
            print(f"[{counts['done'] + counts['failed']}/{bar.total}] {name}: {r.get('outcome', r['status'])}",
                  flush=True)
        else:
            bar.set_description_str(name, refresh=False)
        bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=False)
        bar.update(1)

    counts = execute.run_sweep(plan, jobs=args.jobs, group=args.group, backend=args.backend, address=args.address,
                               retries=args.retries, data_dir=args.data_dir, threads=args.threads,
                               on_result=on_result, log=bar.write)
    bar.close()
    if counts["interrupted"]:
        print(f"\ninterrupted: {counts['done']} run(s) finished and kept in {out}; rerun the same command to "
              f"finish the rest", file=sys.stderr)
        return 130
    print(f"{counts['done']} run(s) finished, {counts['failed']} failed; index: {out / 'index.csv'}" if plan.todo
          else f"nothing to run; index in {out / 'index.csv'}")
    if counts["failed"]:
        print(f"failed runs are described in {out / 'failed'}; rerun the same command to retry them")
        return 1
    return 0


def estimate_lines(est) -> list[str]:
    """The estimate as `rote sweep` prints it: the range (when the epochs are known), then the bound."""
    how = f"epochs: {est.epochs_from}; speed: {est.speed_from}" + (f"; {est.note}" if est.note else "")
    if est.low is None:
        first = (f"estimate: unknown without finished runs or expect_epochs in the sweep file ({how}); "
                 f"only the bound below")
    else:
        first = f"estimate: {_fmt_range(est.low, est.high)} ({how})"
    return [first, f"upper bound: {_fmt_seconds(est.bound)} if every run used its whole epoch budget"]


def _fmt_range(low: float, high: float) -> str:
    """'14-22 minutes', '2.5-4.1 hours', in the unit of the high end (low, high in seconds)."""
    if high < 120:
        unit, div, fmt = "seconds", 1, "{:.0f}"
    elif high < 2 * 3600:
        unit, div, fmt = "minutes", 60, "{:.0f}"
    else:
        unit, div, fmt = "hours", 3600, "{:.1f}"
    lo, hi = fmt.format(low / div), fmt.format(high / div)
    return f"{hi} {unit}" if lo == hi else f"{lo}-{hi} {unit}"


def condition_names(sweep) -> dict[str, str]:
    """{run key: 'labels=partial:0.4 seed=1'}: the settings that vary across the sweep, then the seed."""
    varying = [f.name for f in fields(RunConfig) if f.name != "seed"
               and len({getattr(c, f.name) for c in sweep.configs}) > 1]
    return {c.key(): " ".join([f"{k}={getattr(c, k)}" for k in varying] + [f"seed={c.seed}"])
            for c in sweep.configs}


def cmd_studies(args) -> int:
    from rote.experiments.studies import list_studies

    studies = list_studies()
    width = max(len(s["name"]) for s in studies)
    for s in studies:
        print(f"{s['name']:<{width}}  {s['summary']}" + (f" [{s['time']}]" if s["time"] else ""))
    print("run one with `rote sweep NAME` (results in sweeps/NAME/); show its plan first with --dry-run")
    return 0


def _store(args):
    from rote.experiments.store import Store

    if not args.sweep_dir.is_dir():
        raise RoteError(f"{args.sweep_dir} does not exist; expected a sweep's store (made by `rote sweep`)"
                        + (" or a run directory (made by `rote run`)" if args.command == "plot" else ""))
    store = Store(args.sweep_dir)
    if not store.done_keys():
        raise RoteError(f"{args.sweep_dir} holds no finished runs; run `rote sweep FILE --out {args.sweep_dir}` first")
    return store


def cmd_table(args) -> int:
    from rote.reporting.table import write_table

    text, paths = write_table(_store(args), args.out or args.sweep_dir)
    print(text)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_plot(args) -> int:
    d = args.sweep_dir
    if (d / "config.json").is_file():  # one run: redraw its curves
        if not (d / "history.csv").is_file():
            raise RoteError(f"{d} has config.json but no history.csv; a run directory from `rote run` has both")
        from rote.reporting.curves import plot_run

        paths = plot_run(d) if args.out is None else _plot_run_to(d, args.out)
        print("written: " + ", ".join(str(p) for p in paths))
        return 0
    if d.is_dir() and not (d / "runs").is_dir():
        raise RoteError(f"{d} is neither a run directory (config.json and history.csv, from `rote run`) nor a "
                        f"sweep's store (runs/ and index.csv, from `rote sweep`)")
    from rote.reporting.figures import plot_sweep

    if (args.sweep_dir / "config.json").is_file():  # one run's directory: its curves and per-example figures
        from rote.reporting.curves import plot_run
        paths = plot_run(args.sweep_dir, log=print)
    else:
        paths = plot_sweep(_store(args), args.out or args.sweep_dir / "figures")
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def _plot_run_to(run_dir: Path, out: Path) -> list[Path]:
    import shutil

    from rote.reporting.curves import plot_run

    out.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, out / p.name)) for p in plot_run(run_dir)]


def cmd_report(args) -> int:
    from rote.reporting.report import write_report

    path = write_report(_store(args), args.out or args.sweep_dir / "report.html")
    print(f"written: {path}")
    return 0


def cmd_models(args) -> int:
    from rote.config import RunConfig
    from rote.data.registry import get_spec
    from rote.models import available_models, count_parameters, create_model, default_model_name

    # parameter counts depend on the input shape: give them for the default dataset
    spec = get_spec(RunConfig().dataset)
    print(f"parameters on {spec.title} ({'x'.join(map(str, spec.image_shape))}, {spec.classes} classes); "
          f"a bare family name means the one counted here")
    for family, help in available_models().items():
        name = default_model_name(family)
        model = create_model(name, in_shape=spec.image_shape, classes=spec.classes)
        print(f"{name:<20} {count_parameters(model):>10,} parameters  {help}")
    print("your own: --model package.module:function, called as function(in_shape=(C, H, W), classes=K) "
          "and returning a torch.nn.Module")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # say it in the subcommand's words: `rote run --nepochs` points at `rote run --help`
        sub = parser.subparsers.get(args.command) if args.command else None
        hint = ""
        if sub is not None and extra[0].startswith("--"):
            import difflib

            flags = [o for a in sub._actions for o in a.option_strings]
            close = difflib.get_close_matches(extra[0].split("=")[0], flags, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        commands = {"run": cmd_run, "data": cmd_data, "models": cmd_models, "sweep": cmd_sweep, "table": cmd_table,
                    "plot": cmd_plot, "report": cmd_report, "studies": cmd_studies}
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except RoteError as e:
        print(f"rote: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rote ... | head` closed the pipe: stop quietly, as cat does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
