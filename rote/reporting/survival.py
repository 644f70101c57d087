"""Time to memorise with competing outcomes: the Aalen-Johansen cumulative incidence.

A run of a study ends in one of three ways before its budget runs out: it
memorises (the event we time), it dies (a collapsed network can never
memorise: a *competing* event, not a censoring), or it diverges (also final).
Only a run still alive when its budget ended is censored: it might have
memorised later.

Kaplan-Meier would censor the dead runs as if they might still memorise, and
so overstate how many do and pull the median down (a study where 4 of 10
memorise would get a median). The cumulative incidence of memorisation,

    F(t) = sum over event times t_i <= t of  S(t_i-) * d_i / n_i

(S the Kaplan-Meier probability of having had no event of any kind, d_i the
runs that memorised at t_i, n_i those at risk), is the probability that a run
has memorised by epoch t, with dead runs counted as never memorising. Its
median is the first t with F(t) >= 1/2, "not reached" (None) when F stays
below one half.

Ties: events of different kinds at one epoch are all counted at that epoch
(the estimator's own handling; no jitter). The pointwise 95% band is the
delta-method variance of Collett (2015, "Modelling Survival Data in Medical
Research", 3rd ed., p. 411), the one lifelines uses, on the log(-log F) scale
so that it stays within [0, 1]; the median's interval is read off that band
as Brookmeyer and Crowley read theirs off the survival band: the first times
the band's upper and lower edges reach one half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

Z95 = 1.959963984540054


@dataclass
class Incidence:
    """The cumulative incidence of one kind of event among competing kinds.

    times: the distinct times at which any event happened, ascending; incidence: F just after each;
    low, high: its pointwise 95% band; at_risk: runs at risk there; events: the event of interest there;
    other: competing events there. n, n_events, n_competing, n_censored count the runs.
    """

    n: int
    n_events: int
    n_competing: int
    n_censored: int
    times: list
    incidence: list
    low: list
    high: list
    at_risk: list
    events: list
    other: list
    median: Optional[float]
    median_low: Optional[float]
    median_high: Optional[float]

    def at(self, t: float) -> float:
        """F(t): the probability of the event by time t."""
        i = np.searchsorted(np.asarray(self.times, dtype=float), t, side="right")
        return float(self.incidence[i - 1]) if i > 0 else 0.0

    @property
    def final(self) -> float:
        """F at the last event time: the share of runs that memorise within the budget, estimated."""
        return float(self.incidence[-1]) if self.incidence else 0.0


def aalen_johansen(times: Sequence[float], kinds: Sequence[int], event: int = 1, z: float = Z95) -> Incidence:
    """Cumulative incidence of ``event`` among competing events.

    times[i]: when run i ended (or was censored); kinds[i]: 0 for censored (alive at its budget's end),
    ``event`` for the event of interest, any other positive integer for a competing event.
    """
    t = np.asarray(times, dtype=np.float64)
    k = np.asarray(kinds, dtype=np.int64)
    if t.shape != k.shape or t.ndim != 1:
        raise ValueError("times and kinds must be two 1-D arrays of one length")
    if (k < 0).any() or not np.isfinite(t).all():
        raise ValueError("kinds must be >= 0 (0: censored) and times finite")
    uniq = np.unique(t[k > 0])
    n_i = np.array([(t >= u).sum() for u in uniq], dtype=np.float64)  # censored at u still at risk at u
    d_all = np.array([((t == u) & (k > 0)).sum() for u in uniq], dtype=np.float64)
    d_j = np.array([((t == u) & (k == event)).sum() for u in uniq], dtype=np.float64)
    surv = np.cumprod(1.0 - d_all / n_i)  # P(no event of any kind) just after each time
    lag = np.concatenate([[1.0], surv[:-1]])  # S(t_i-)
    F = np.cumsum(lag * d_j / n_i)

    # Collett's delta-method variance of F at each time t (sums over t_i <= t)
    var = np.empty_like(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(n_i > d_all, d_all / (n_i * (n_i - d_all)), 0.0)
    for m in range(len(F)):
        diff = F[m] - F[: m + 1]
        var[m] = (np.sum(diff ** 2 * g[: m + 1])
                  + np.sum(lag[: m + 1] ** 2 * d_j[: m + 1] * (n_i[: m + 1] - d_j[: m + 1]) / n_i[: m + 1] ** 3)
                  - 2 * np.sum(diff * lag[: m + 1] * d_j[: m + 1] / n_i[: m + 1] ** 2))
    var = np.maximum(var, 0.0)
    low, high = np.zeros_like(F), np.zeros_like(F)
    inside = (F > 0) & (F < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var) / (F * np.abs(np.log(F)))
        lf = np.log(-np.log(F))
        low = np.where(inside, np.exp(-np.exp(lf + z * se)), np.where(F >= 1, 1.0, 0.0))
        high = np.where(inside, np.exp(-np.exp(lf - z * se)), np.where(F >= 1, 1.0, 0.0))
    low, high = np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0)

    def first(curve):
        hit = np.flatnonzero(curve >= 0.5 - 1e-12)
        return float(uniq[hit[0]]) if hit.size else None

    return Incidence(
        n=int(t.size), n_events=int((k == event).sum()), n_competing=int(((k > 0) & (k != event)).sum()),
        n_censored=int((k == 0).sum()), times=uniq.tolist(), incidence=F.tolist(), low=low.tolist(),
        high=high.tolist(), at_risk=n_i.astype(int).tolist(), events=d_j.astype(int).tolist(),
        other=(d_all - d_j).astype(int).tolist(), median=first(F), median_low=first(high), median_high=first(low))


# the kinds a run's outcome counts as: memorised is the event; collapsed and diverged compete (a dead or
# exploded network never memorises); a run whose budget ran out is censored
MEMORISED, COMPETING, CENSORED = 1, 2, 0


def outcome_kind(outcome: str) -> int:
    if outcome == "memorized":
        return MEMORISED
    if outcome in ("collapsed", "diverged"):
        return COMPETING
    return CENSORED


def fmt_median(inc: Incidence, unit: str = "") -> str:
    """'33 (31-38)', '33 (31-not reached)' or 'not reached'."""
    if inc.median is None:
        return "not reached"
    lo = "?" if inc.median_low is None else f"{inc.median_low:g}"
    hi = "not reached" if inc.median_high is None else f"{inc.median_high:g}"
    return f"{inc.median:g}{unit} ({lo}-{hi})"
