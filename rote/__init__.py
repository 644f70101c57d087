"""rote: can a network learn its training set by rote?

The Python API (the same calls the `rote` command makes)::

    import rote

    r = rote.run(n_train=500, labels="partial:0.4", seed=1, out="runs/x")
    r.result["test_acc"], r.history       # result.json, and history.csv as a DataFrame
    runs, histories = rote.load("sweeps/seed")  # a sweep's store: index.csv and every history.csv

    s = rote.sweep("seed-quick", out="sweeps/sq", progress=True)  # a study, a sweep file or a dict
    runs, histories = s.load()

    cfg = rote.config(n_train=500, epochs=20)   # a RunConfig, checked now
    rote.run(cfg, out="runs/y")

``import rote`` is light: torch is imported when a run starts.
"""

__version__ = "0.1.0"

# first: OpenMP's wait policy must be in the environment before torch is imported (see rote.threads)
import rote.threads  # noqa: E402,F401

# rote.config is a module (light: numpy) *and*, below, a function of this package: import the module first,
# so that a later `from rote.config import RunConfig` anywhere finds it loaded and leaves the function alone.
from rote.config import RunConfig  # noqa: E402
from rote.api import RunResult, SweepResult, config, load, run, suspects, sweep  # noqa: E402

__all__ = ["RunConfig", "RunResult", "SweepResult", "config", "load", "run", "suspects", "sweep", "__version__"]
