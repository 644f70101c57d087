"""The command line: parsing only. Every command is a thin call into the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from rote.config import RunConfig
from rote.errors import RoteError
from rote.interrupt import EXIT_TERMINATED, Terminated, sigterm_as_interrupt

# help for each run setting; the flag is --name-with-dashes
# settings rote sets itself (rote.config.identify); no flag
SET_BY_ROTE = ("model_source", "data_source", "optimizer_source")

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
    "optimizer": "adam (the seed's, as PyTorch computes it), adam-keras1 (exactly Keras 1.2's update), adamw "
                 "(decoupled weight decay), sgd with momentum, or your own as package.module:function, called "
                 "with (params, cfg) and returning a torch.optim.Optimizer (default: %(default)s)",
    "loss": "ce (exact cross-entropy) or keras1 (Keras 1.2's: probabilities clipped to [1e-7, 1-1e-7], so "
            "confident mistakes get no gradient) (default: %(default)s)",
    "lr": "learning rate (default: %(default)s)",
    "momentum": "SGD momentum (default: %(default)s)",
    "weight_decay": "L2 weight decay (default: %(default)s)",
    "schedule": "learning-rate schedule: constant, step (x step-gamma every step-every epochs), or cosine "
                "(half a cosine from lr to 0 over the epoch budget after the warm-up) (default: %(default)s)",
    "model_source": "set by rote, never given: the SHA-256 (16 hex) of the source file of a model given as "
                    "package.module:function; an edited model makes new runs (default: %(default)s)",
    "data_source": "set by rote, never given: the SHA-256 (16 hex) of a dataset given as npz:PATH; an edited "
                   "file makes new runs (default: %(default)s)",
    "optimizer_source": "set by rote, never given: the SHA-256 (16 hex) of the source file of an optimizer given "
                        "as package.module:function (default: %(default)s)",
    "warmup_epochs": "epochs of linear learning-rate warm-up (lr x epoch / K) before the schedule "
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


# the sweep file's format, for `rote sweep --help`
SWEEP_FORMAT = """\
the sweep file (YAML):
  name: corruption           # the store's folder under sweeps/ (default: the file's name)
  description: >             # optional, shown by `rote studies`
    Label corruption with the seed CNN.
  base:                      # any `rote run` setting, with _ for - (n_train, not --n-train);
    n_train: 3000            #   the rest keep their defaults (the seed experiment)
    epochs: 200
  grid:                      # every combination of these values
    labels: [true, "partial:0.2", "partial:0.4", random]
  cases:                     # optional: partial settings, each combined with every grid point
    - {inputs: none}         #   (for conditions that are not a product of values)
    - {inputs: shuffled-pixels}
  seeds: 5                   # 5 means seeds 0-4; or a list: [0, 3, 7]
  expect_epochs: 40          # optional: epochs a run is expected to take, for the estimate
  save_model: true           # optional: keep every run's final weights (model.pt), as rote run --save-model

The runs are cases x grid x seeds (here 2 x 4 x 5 = 40). Every run is checked before
anything trains: an unknown key or a bad value is an error naming its line.
The shipped studies are examples to copy: `rote studies` lists them.

example:
  rote sweep corruption-quick --dry-run   # the plan and an estimate of its time here
  rote sweep my-sweep.yaml --out sweeps/mine && rote report sweeps/mine
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    defaults = RunConfig()
    g = p.add_argument_group("run settings (defaults are the seed experiment)")
    for f in fields(RunConfig):
        if f.name in SET_BY_ROTE:  # the identity of a user's model and data: measured, never given
            continue
        if f.name == "channels_last":  # an optional switch: a pair of flags, auto when neither is given
            m = g.add_mutually_exclusive_group()
            m.add_argument("--channels-last", dest="cfg_channels_last", action="store_const", const="true",
                           default=None, help=RUN_HELP[f.name])
            m.add_argument("--no-channels-last", dest="cfg_channels_last", action="store_const", const="false",
                           help="contiguous (channels-first) memory layout")
            continue
        g.add_argument("--" + f.name.replace("_", "-"), dest="cfg_" + f.name, metavar=f.name.upper(),
                       default=None, help=RUN_HELP[f.name] % {"default": getattr(defaults, f.name)})


def _add_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-every", type=nonnegative_float, default=None, metavar="SECONDS",
                   help="seconds between checkpoints of a run in flight, 0 for every epoch; a run also "
                   "checkpoints when interrupted (default: 600)")


def nonnegative_float(text: str) -> float:
    x = float(text)
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return x


def _config_from(args) -> RunConfig:
    from rote.config import identify

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return identify(RunConfig.from_dict(overrides))


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
                   help="also log each epoch's scalars, the settings and the result for TensorBoard: a new "
                   "subdirectory of DIR per run, named by its time and condition (needs the tensorboard package)")
    r.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="go on with the unfinished run in RUN_DIR from its checkpoint, with its own settings")
    r.add_argument("--save-model", action="store_true", help="keep the final weights in model.pt "
                   "(the model's state_dict)")
    _add_checkpoint_flag(r)
    r.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: the cores this "
                   "process may use, one for a dense model under 10 M multiply-adds a step); changes the speed, and for convolutions the last bits of the numbers: give "
                   "the same value to rerun a run bit for bit on another machine")
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
                        "unfinished ones are run again, none twice.", epilog=SWEEP_FORMAT,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("file", help="sweep file (YAML), or the name of a shipped study (see `rote studies`)")
    sw.add_argument("--out", type=Path, default=None, help="store directory (default: sweeps/<name>/)")
    sw.add_argument("--jobs", type=positive_int, default=None, help="runs at once in local processes "
                    "(default on a CPU: 1 or one per core, whichever measured faster here; one on a GPU)")
    sw.add_argument("--group", type=positive_int, default=None, help="train up to K compatible runs at once as one "
                    "batched model, equal to the runs one by one to float rounding (default: 32 on a GPU; 1 on a CPU, where "
                    "it pays only for tiny dense models: 9-15x for mlp:16 at K = 32-128, benchmarks/bench.py --tiny)")
    sw.add_argument("--threads", type=positive_int, default=None, help="CPU threads per process (default: the "
                    "cores this process may use shared out among the processes, one for dense models under 10 M "
                    "multiply-adds a step); changes the speed, and for convolutions the last bits")
    sw.add_argument("--measure-packing", action="store_true", help="measure again whether one process with every "
                    "core's thread or one single-threaded process per core is faster here (the default --jobs; "
                    "measured once per machine and model, then cached)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local", help="where runs execute "
                    "(ray: on a Ray cluster, needs `pip install 'rote-memorization[ray]'`) (default: local)")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    sw.add_argument("--retries", type=nonnegative_int, default=2, help="times a run lost with its worker process "
                    "or node is retried (default: %(default)s)")
    sw.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    _add_checkpoint_flag(sw)
    sw.add_argument("--dry-run", action="store_true", help="show the plan and the estimate, run nothing")
    sw.add_argument("--no-estimate", action="store_true", help="skip the time estimate")
    sw.add_argument("--save-model", action="store_true", help="keep every run's final weights in its model.pt "
                    "(as rote run --save-model; or save_model: true in the sweep file)")
    sw.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                    help="also log each run's scalars per epoch, its settings and result for TensorBoard, one "
                    "subdirectory of DIR per run named by its condition and key (needs the tensorboard package)")

    sub.add_parser("studies", help="list the studies shipped with rote (run one with `rote sweep NAME`)")

    for name, what in (("table", "print and write the summary table of a sweep (summary.csv, summary.md; "
                                 "memorization.csv for runs on a subset)"),
                       ("plot", "draw the figures of a sweep from its store, or redraw one run's (PNG and SVG)"),
                       ("report", "write one self-contained HTML report of a sweep")):
        c = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ". Reads only the store.")
        c.add_argument("sweep_dir", type=Path, help="the sweep's store directory (e.g. sweeps/corruption)"
                       + (", or a run directory (from `rote run`)" if name == "plot" else ""))
        c.add_argument("--out", type=Path, default=None, help="where to write (default: inside the store)")
        c.add_argument("--where", action="append", default=[], metavar="SETTING=VALUE",
                       help="only the runs with this setting, as the table prints it (e.g. --where optimizer=adam "
                       "for one arm of a comparison); repeat for several; needs --out, so that the store's own "
                       "files stay those of all its runs")

    what = ("rank the training examples of a run (or of every run of a store) by how likely their label is wrong: "
            "suspects.csv, an image grid of the top ones and a one-line summary")
    s = sub.add_parser("suspects", help=what, description=what[0].upper() + what[1:] + ". The run must have been "
                       "recorded with per-example records (record_examples, the default). The default score, "
                       "correctness (the share of presentations at which the model predicted the given label), "
                       "found rote's own changed labels best of nine scores in the corruption study, whether or "
                       "not the run went on to memorise (docs/manual.md).")
    s.add_argument("path", type=Path, help="a run directory (rote run) or a store (rote sweep)")
    s.add_argument("--score", default=None, help="the score to rank by (default: correctness); any column of "
                   "scores.csv: first_learned, learned_forever, forgetting_events, confidence, variability, "
                   "correctness, aum, el2n, final_loss")
    s.add_argument("--top", type=positive_int, default=24, help="examples in the image grid (default: 24)")
    s.add_argument("--out", type=Path, default=None, help="where to write (default: the run directory; for a "
                   "store, STORE/suspects/KEY/)")

    m = sub.add_parser("models", help="list the registered models and their parameter counts",
                       description="List the registered models with their parameter counts on a dataset's image "
                       "shape (and on the 28x28 crop of --preprocess zhang where that differs).")
    m.add_argument("--dataset", default=None, help="count on this dataset's shape: mnist, fashion-mnist, cifar10 "
                   "(default: %s)" % RunConfig().dataset)
    p.subparsers = sub.choices  # for errors in a subcommand's own words (main)
    return p


def _resumed_config(args) -> RunConfig:
    """The settings of the unfinished run in --resume RUN_DIR; run flags cannot change them."""
    from rote.experiments.record import CHECKPOINT, CONFIG, RESULT, read_record

    d = args.resume
    if args.out is not None or any(k.startswith("cfg_") and v is not None for k, v in vars(args).items()):
        raise RoteError("--resume takes its settings and place from RUN_DIR; leave out --out and run settings")
    if not (d / CONFIG).is_file():
        raise RoteError(f"{d} is not a run directory (no {CONFIG}); give the --out of the run to resume")
    if (d / RESULT).is_file() and not (d / CHECKPOINT).is_file():  # with one, it was killed as it finished
        raise RoteError(f"the run in {d} has finished; there is nothing to resume")
    if not (d / CHECKPOINT).is_file():
        print(f"rote: {d} has no {CHECKPOINT}; the run starts over there", file=sys.stderr)
    try:
        return RunConfig.from_dict(read_record(d)["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise RoteError(f"cannot read the settings in {d / CONFIG} ({e}); start a new run instead") from None


def cmd_run(args) -> int:
    from rote.experiments.run import RunInterrupted, run, run_threads

    cfg = _resumed_config(args) if args.resume is not None else _config_from(args)
    progress = None
    if sys.stdout.isatty() and not args.quiet:
        from tqdm import tqdm

        progress = lambda it: tqdm(it, leave=False, unit="batch", dynamic_ncols=True)  # noqa: E731
    log = (lambda s: None) if args.quiet else print
    tb = None
    if args.tensorboard is not None:
        from rote.experiments.tracking import TensorBoardLogger, require_tensorboard, run_logdir

        require_tensorboard(args.tensorboard)  # checks the package and the place before anything trains
        tb = TensorBoardLogger(run_logdir(args.tensorboard, cfg), cfg)
    warning = []
    threads = args.threads
    if args.resume is not None:  # a run goes on with the threads it started with: they change its last bits
        from rote.experiments.run import recorded_threads

        recorded = recorded_threads(args.resume)
        if threads is not None and recorded is not None and threads != recorded:
            raise RoteError(f"the run in {args.resume} was started with --threads {recorded}; resume it with "
                            f"--threads {recorded} or leave --threads out")
        threads = threads or recorded
    run_threads(cfg, threads, args.data_dir, warn=warning.append)

    def log_run(line: str) -> None:  # the oversubscription warning once the run has passed its checks
        if line.startswith("rote ") and warning:
            print(warning.pop(), file=sys.stderr)
        log(line)

    try:
        run_dir, result = run(cfg, args.resume or args.out, data_dir=args.data_dir, log=log_run, progress=progress,
                              on_epoch=tb and tb.on_epoch, resume=args.resume is not None,
                              checkpoint_every=args.checkpoint_every, save_model=args.save_model)
    except RunInterrupted as e:
        if tb is not None:
            tb.finish({"outcome": "terminated" if e.terminated else "interrupted"})
        how = "terminated" if e.terminated else "interrupted"
        kept = (f"a checkpoint of epoch {e.kept_epoch} is kept in {e.run_dir}; go on with "
                f"`rote run --resume {e.run_dir}`" if e.kept_epoch is not None else
                f"config.json and history.csv are kept in {e.run_dir}, no epoch finished to resume from")
        print(f"\n{how}: {kept}", file=sys.stderr)
        return EXIT_TERMINATED if e.terminated else 130
    except RoteError:
        if tb is not None:  # refused before it trained: leave no empty TensorBoard run behind
            import shutil

            tb.close()
            shutil.rmtree(tb.logdir, ignore_errors=True)
        raise
    else:
        if tb is not None:
            tb.finish(result)
    finally:
        if tb is not None:
            tb.close()
    from rote.reporting.curves import plot_run  # matplotlib is slow to import; only now

    plot_run(run_dir)
    if args.quiet:
        from rote.training.metrics import chance_sentence

        from rote.training.metrics import outcome_word

        print(f"{outcome_word(result['outcome'])}: train acc {result['train_acc']:.2%}, test acc {result['test_acc']:.2%} "
              f"after {plural(result['epochs'], 'epoch')}")
        print(chance_sentence(result["test_acc"], result["chance"]))
    print(f"recorded in {run_dir}/ ({', '.join(_written(run_dir))})")
    if tb is not None:
        print(f"TensorBoard: this run is {tb.logdir}/; see every run with tensorboard --logdir {args.tensorboard}")
    return 1 if result["outcome"] == "diverged" else 0


def _written(run_dir: Path) -> list[str]:
    """The files a run directory holds, in the order its layout lists them (rote.experiments.record), then
    the figures."""
    from rote.experiments.record import FILES

    order = list(FILES)
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
    tb = None
    if args.tensorboard is not None:  # before the store is made: a refusal leaves nothing behind
        from rote.experiments.tracking import require_tensorboard

        require_tensorboard(args.tensorboard)
        tb = args.tensorboard
    plan = execute.plan(sweep, out, data_dir=args.data_dir)
    print(f"sweep '{sweep.name}': {plural(len(sweep.configs), 'run')} ({plural(len(sweep.conditions()), 'condition')}"
          f" x {plural(len(sweep.seeds), 'seed')}); {len(plan.done)} already in {out}, {len(plan.todo)} to run")
    if args.measure_packing and plan.todo and args.backend == "local":
        from rote.experiments.packing import plan_jobs

        plan_jobs(plan, args.group or 1, remeasure=True, log=print)
    if plan.todo and not args.no_estimate:
        from rote.experiments.estimate import estimate

        for line in estimate_lines(estimate(plan, jobs=args.jobs, group=args.group, backend=args.backend,
                                            data_dir=args.data_dir)):
            print(line)
    if args.dry_run:
        return 0
    bar = tqdm(total=len(plan.todo), unit="run", dynamic_ncols=True, disable=None if plan.todo else True)
    names = condition_names(sweep)
    if tb is not None:
        from rote.experiments.tracking import condition_words

        # one folder per run, named by its condition and key (a rerun logs only the runs it finishes)
        tb_names = {c.key(): condition_words(c) for c in sweep.configs}

    def on_result(r, counts):
        name = names.get(r["key"], r["key"])
        if tb is not None and r["status"] == "done":  # from the record, whichever process or machine trained it
            from rote.experiments.tracking import log_record

            log_record(tb / f"{tb_names[r['key']]}_{r['key'][:8]}", plan.store.record_dir(r["key"]))
        if r["status"] == "failed":
            bar.write(f"run {name} ({r['key']}) failed: {r['error']}")
        if bar.disable:  # not a terminal: one line per run instead of a bar
            from rote.training.metrics import outcome_word

            print(f"[{counts['done'] + counts['failed']}/{bar.total}] {name}: {outcome_word(r.get('outcome', r['status']))}",
                  flush=True)
        else:
            bar.set_description_str(name, refresh=False)
        bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=False)
        bar.update(1)

    counts = execute.run_sweep(plan, jobs=args.jobs, group=args.group, backend=args.backend, address=args.address,
                               retries=args.retries, data_dir=args.data_dir, threads=args.threads,
                               on_result=on_result, log=bar.write, checkpoint_every=args.checkpoint_every,
                               save_model=args.save_model or sweep.save_model)
    bar.close()
    if counts["interrupted"]:
        print(f"\n{'terminated' if counts['terminated'] else 'interrupted'}: {counts['done']} run(s) finished and "
              f"kept in {out}, the runs in flight checkpointed; rerun the same command to resume them and finish "
              f"the rest", file=sys.stderr)
        return EXIT_TERMINATED if counts["terminated"] else 130
    print(f"{counts['done']} run(s) finished, {counts['failed']} failed; index: {out / 'index.csv'}" if plan.todo
          else f"nothing to run; index in {out / 'index.csv'}")
    if tb is not None:  # the runs finished before (an earlier sweep, one without --tensorboard) are logged too
        from rote.experiments.tracking import log_record

        logged = 0
        for c in plan.done:
            logdir = tb / f"{tb_names[c.key()]}_{c.key()[:8]}"
            if not logdir.exists():
                log_record(logdir, plan.store.record_dir(c.key()))
                logged += 1
        print(f"TensorBoard: {plural(len(plan.done) + counts['done'], 'run')} in {tb}"
              + (f" ({logged} finished earlier, logged now)" if logged else "")
              + f"; tensorboard --logdir {tb}")
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
    from rote.config import IDENTITY_FIELDS

    varying = [f.name for f in fields(RunConfig) if f.name != "seed" and f.name not in IDENTITY_FIELDS
               and len({getattr(c, f.name) for c in sweep.configs}) > 1]
    return {c.key(): " ".join([f"{k}={getattr(c, k)}" for k in varying] + [f"seed={c.seed}"])
            for c in sweep.configs}


def cmd_studies(args) -> int:
    import textwrap

    from rote.experiments.studies import list_studies

    wrap = lambda text: textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="  ")  # noqa: E731
    for s in list_studies():
        print(f"{s['name']}: {plural(s['runs'], 'run')}, at most {plural(s['epochs'], 'epoch')} each")
        print(wrap(s["description"]))
        print(wrap("time: " + (s["time"] or "not measured yet; `rote sweep " + s["name"] + " --dry-run` estimates "
                               "it on this machine")))
        print()
    print("run one with `rote sweep NAME` (results in sweeps/NAME/); show its plan and an estimate of its time on "
          "this machine first with `rote sweep NAME --dry-run`")
    return 0


def _store(args):
    from rote.experiments.store import Store

    if not args.sweep_dir.is_dir():
        raise RoteError(f"{args.sweep_dir} does not exist; expected a sweep's store (made by `rote sweep`)"
                        + (" or a run directory (made by `rote run`)" if args.command == "plot" else ""))
    if (args.sweep_dir / "config.json").is_file():  # one run's directory, from `rote run`
        raise RoteError(f"{args.sweep_dir} is one run's directory; `rote {args.command}` summarises a sweep's store "
                        f"(several runs, made by `rote sweep FILE`); for one run, its result is in "
                        f"{args.sweep_dir / 'result.json'} and `rote plot {args.sweep_dir}` redraws its curves")
    store = Store(args.sweep_dir)
    if not store.done_keys():
        raise RoteError(f"{args.sweep_dir} holds no finished runs; run `rote sweep FILE --out {args.sweep_dir}` first")
    own = {args.sweep_dir.resolve(), (args.sweep_dir / "figures").resolve(), (args.sweep_dir / "report.html").resolve()}
    if args.where and (args.out is None or args.out.resolve() in own):
        raise RoteError(f"--where draws from some of the runs only; give --out a directory outside the store's own "
                        f"files, so that those in {args.sweep_dir} stay those of all its runs")
    _check_writable(args.out or args.sweep_dir)
    return store


def _where(args) -> dict:
    from rote.reporting.results import parse_where

    return parse_where(args.where)


def _check_writable(out: Path) -> None:
    """Refuse, before any work, to write tables, figures or a report where they cannot be written."""
    import os

    existing = out
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RoteError(f"cannot write to {out}: {existing} is not a writable directory here; the store is "
                        f"unchanged; give --out a writable directory")


def _write_error(e: OSError, args) -> str | None:
    """One line for a write that failed for want of space or permission; None for any other OSError."""
    from rote.experiments.record import write_failed

    kept = ("the store stays consistent: every finished record is complete, and the same command redoes the rest"
            if args.command == "sweep" else "the store is unchanged" if args.command in ("table", "report", "plot")
            else "nothing else was changed")
    place = getattr(args, "out", None) or getattr(args, "sweep_dir", None) or Path(".")
    error = write_failed(e, Path(e.filename) if isinstance(e.filename, str) else place, kept)
    return None if error is None else str(error)


def cmd_table(args) -> int:
    from rote.reporting.table import write_table

    text, paths = write_table(_store(args), args.out or args.sweep_dir, where=_where(args))
    print(text)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_suspects(args) -> int:
    from rote.analysis.suspects import DEFAULT_SCORE
    from rote.errors import DataError
    from rote.reporting.suspects import suspects

    try:
        suspects(args.path, args.out, score=args.score or DEFAULT_SCORE, top=args.top)
    except DataError as e:
        raise RoteError(str(e)) from None
    return 0


def cmd_plot(args) -> int:
    from rote.experiments.record import CONFIG, HISTORY

    d = args.sweep_dir
    if (d / CONFIG).is_file():  # one run: redraw its curves
        if args.where:
            raise RoteError(f"{d} is one run's directory; --where chooses runs of a sweep's store")
        if not (d / HISTORY).is_file():
            raise RoteError(f"{d} has {CONFIG} but no {HISTORY}; a run directory from `rote run` has both")
        from rote.reporting.curves import plot_run

        paths = plot_run(d) if args.out is None else _plot_run_to(d, args.out)
        print("written: " + ", ".join(str(p) for p in paths))
        return 0
    if d.is_dir() and not (d / "runs").is_dir():
        raise RoteError(f"{d} is neither a run directory (config.json and history.csv, from `rote run`) nor a "
                        f"sweep's store (runs/ and index.csv, from `rote sweep`)")
    from rote.reporting.figures import plot_sweep

    if (args.sweep_dir / CONFIG).is_file():  # one run's directory: its curves and per-example figures
        from rote.reporting.curves import plot_run
        paths = plot_run(args.sweep_dir, log=print)
    else:
        paths = plot_sweep(_store(args), args.out or args.sweep_dir / "figures", where=_where(args))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def _plot_run_to(run_dir: Path, out: Path) -> list[Path]:
    import shutil

    from rote.reporting.curves import plot_run

    out.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, out / p.name)) for p in plot_run(run_dir)]


def cmd_report(args) -> int:
    from rote.reporting.report import write_report

    path = write_report(_store(args), args.out or args.sweep_dir / "report.html", where=_where(args))
    print(f"written: {path}")
    return 0


def cmd_models(args) -> int:
    from rote.data.prepare import input_shape
    from rote.data.registry import get_spec
    from rote.models import available_models, count_parameters, create_model, default_model_name

    # parameter counts depend on the input shape: the dataset's, and the crop of --preprocess zhang where it differs
    spec = get_spec(args.dataset or RunConfig().dataset)
    shapes = {"": tuple(spec.image_shape)}
    cropped = input_shape(tuple(spec.image_shape), "zhang")
    if cropped != shapes[""]:
        shapes[" (--preprocess zhang)"] = cropped
    heads = ["x".join(map(str, shape)) + what for what, shape in shapes.items()]
    print(f"parameters on {spec.title} ({spec.classes} classes) by input shape"
          + (" (Zhang et al.'s Table 1 counts on the crop)" if len(shapes) > 1 else "")
          + "; a bare family name means the one counted here; `rote models --dataset NAME` for another dataset")
    names = {default_model_name(f): h for f, h in available_models().items()}
    names.update({n: "Zhang et al.'s MLP 3x512" for n in MODEL_EXAMPLES if n not in names})
    widths = [max(10, len(h)) for h in heads]
    print(f"{'model':<20} " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths)))
    for name, help in names.items():
        cells = []
        for shape in shapes.values():
            try:
                cells.append(f"{count_parameters(create_model(name, in_shape=shape, classes=spec.classes)):,}")
            except Exception:  # a model that does not fit this shape (too small an image for its pooling)
                cells.append("-")
        print(f"{name:<20} " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)) + f"  {help}")
    print("your own: --model package.module:function, called as function(in_shape=(C, H, W), classes=K) "
          "and returning a torch.nn.Module")
    return 0


# listed by `rote models` beside each family's default
MODEL_EXAMPLES = ("mlp:512x512x512",)


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
    if args.command is None:  # bare `rote`: the help is the answer, not an error
        parser.print_help()
        return 0
    sigterm_as_interrupt()
    try:
        commands = {"run": cmd_run, "data": cmd_data, "models": cmd_models, "sweep": cmd_sweep, "table": cmd_table,
                    "plot": cmd_plot, "report": cmd_report, "studies": cmd_studies, "suspects": cmd_suspects}
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except RoteError as e:
        print(f"rote: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print("\nterminated" if terminated else "\ninterrupted", file=sys.stderr)
        return EXIT_TERMINATED if terminated else 130
    except BrokenPipeError:  # `rote ... | head` closed the pipe: stop quietly, as cat does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except OSError as e:  # a full disk, a read-only place: the user's to fix, not a bug
        line = _write_error(e, args)
        if line is None:
            raise
        print(f"rote: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
