"""How the time to memorise grows with the training set: a power law fitted in log-log.

time = a * N^b, fitted as log(time) = log(a) + b log(N) by least squares over
the runs that memorised (each run one point). The interval of the slope and of
the fitted curve is a bootstrap over runs (resampled with replacement, the fit
redone; percentile interval), which needs no assumption about the residuals'
distribution. The fit describes the runs that memorised: a run that collapsed
never memorises (it is counted in the outcome shares, not here), and where runs
were still alive at their budget's end the fitted times are a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLaw:
    slope: float
    intercept: float  # of log(time) against log(N), natural logs
    slope_low: float
    slope_high: float
    n_points: int
    n_sizes: int
    _boot: tuple  # (slopes, intercepts) of the bootstrap fits

    def predict(self, n: float) -> tuple[float, float, float]:
        """(time, low, high): the fitted median time at N with its 95% bootstrap interval."""
        slopes, icepts = self._boot
        curve = np.exp(icepts + slopes * np.log(n))
        return (float(np.exp(self.intercept + self.slope * np.log(n))),
                float(np.percentile(curve, 2.5)), float(np.percentile(curve, 97.5)))


def fit_power_law(ns, times, n_boot: int = 2000, seed: int = 0) -> PowerLaw:
    """Least squares of log(times) on log(ns) with a bootstrap over points; needs two or more distinct N."""
    x = np.log(np.asarray(ns, dtype=np.float64))
    y = np.log(np.asarray(times, dtype=np.float64))
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("ns and times must be two 1-D arrays of one length")
    if np.unique(x).size < 2:
        raise ValueError("a power law needs runs at two or more training-set sizes")
    slope, icept = np.polyfit(x, y, 1)
    rng = np.random.default_rng(seed)
    slopes, icepts = [], []
    while len(slopes) < n_boot:
        idx = rng.integers(0, x.size, x.size)
        if np.unique(x[idx]).size < 2:
            continue  # a resample with one size has no slope
        b, a = np.polyfit(x[idx], y[idx], 1)
        slopes.append(b)
        icepts.append(a)
    slopes, icepts = np.asarray(slopes), np.asarray(icepts)
    return PowerLaw(slope=float(slope), intercept=float(icept), slope_low=float(np.percentile(slopes, 2.5)),
                    slope_high=float(np.percentile(slopes, 97.5)), n_points=int(x.size),
                    n_sizes=int(np.unique(x).size), _boot=(slopes, icepts))
