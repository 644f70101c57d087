"""What every executor runs, wherever the runs happen: train a group of runs into directories.

The local executor (rote.experiments.execute) calls ``train_records`` in its
own process or in a pool's worker, the Ray backend (rote.experiments.ray_backend)
on a cluster's worker; both then land the directories in the store.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Optional

from rote.config import RunConfig
from rote.experiments.plan import load_cached


def _interrupted(e) -> KeyboardInterrupt:
    """Ctrl-C or SIGTERM is the user stopping the sweep, not the run failing: the same interruption again,
    the run's directory kept when it holds a checkpoint to resume from."""
    from rote.interrupt import Terminated

    if e.kept_epoch is None:
        shutil.rmtree(e.run_dir, ignore_errors=True)
    return Terminated() if e.terminated else KeyboardInterrupt()


def _train_one(cfg: RunConfig, dest: Path, data_dir, checkpoint_every: Optional[float] = None,
               save_model: bool = False) -> dict:
    from rote.experiments.run import RunInterrupted, run

    t0 = time.time()
    try:
        _, result = run(cfg, dest, dataset=load_cached(cfg.dataset, data_dir), log=lambda s: None, resume=True,
                        checkpoint_every=checkpoint_every, save_model=save_model)
    except RunInterrupted as e:
        raise _interrupted(e) from None
    except Exception as e:
        shutil.rmtree(dest, ignore_errors=True)
        return {"key": cfg.key(), "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "config": cfg.to_dict(), "host": os.uname().nodename}
    return {"key": cfg.key(), "status": "done", "outcome": result["outcome"], "seconds": time.time() - t0,
            "host": os.uname().nodename}


def train_records(cfgs: list[RunConfig], dests: list[Path], data_dir=None, threads: Optional[int] = None,
                  checkpoint_every: Optional[float] = None, save_model: bool = False) -> list[dict]:
    """Train runs into ``dests``, several compatible ones as one batched model.

    A directory is empty, or holds an unfinished run (the first of a group:
    the group's checkpoint) to resume. Returns one {'key', 'status':
    done|failed, ...} per run: failures are returned, not raised, so one bad
    run never stops a sweep. Ctrl-C and SIGTERM are raised again, the
    checkpoint kept.
    """
    import torch

    from rote.experiments.run import RunInterrupted, run_group

    if threads:
        torch.set_num_threads(threads)
    if len(cfgs) > 1:
        try:
            results = run_group(cfgs, dests, dataset=load_cached(cfgs[0].dataset, data_dir),
                                checkpoint_every=checkpoint_every, save_model=save_model)
            return [{"key": c.key(), "status": "done", "outcome": r["outcome"], "host": os.uname().nodename}
                    for c, r in zip(cfgs, results)]
        except RunInterrupted as e:
            for d in dests[1:]:  # the group's checkpoint is in the first directory
                shutil.rmtree(d, ignore_errors=True)
            raise _interrupted(e) from None
        except Exception:  # one at a time instead, so that a bad run is recorded on its own
            for d in dests:
                shutil.rmtree(d, ignore_errors=True)
    return [_train_one(c, d, data_dir, checkpoint_every, save_model) for c, d in zip(cfgs, dests)]
