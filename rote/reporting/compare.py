"""Two conditions side by side: is a difference in outcome rates more than luck?

For k1 of n1 runs against k2 of n2: the difference of the two shares with
Newcombe's hybrid score interval (1998, method 10: built from the two Wilson
intervals; it stays within [-1, 1] and behaves at 0 and n), and Fisher's exact
test, two-sided (the probability, under equal rates and fixed margins, of a
table no more likely than the one seen), which needs no large-sample
approximation at twenty runs an arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rote.reporting.results import wilson


@dataclass(frozen=True)
class RateDifference:
    k1: int
    n1: int
    k2: int
    n2: int
    difference: float  # k2/n2 - k1/n1
    low: float
    high: float
    p_value: float  # Fisher's exact test, two-sided

    def words(self, what: str) -> str:
        return (f"{what}: {self.k1}/{self.n1} against {self.k2}/{self.n2}, a difference of "
                f"{100 * self.difference:+.0f} points (95% interval {100 * self.low:+.0f} to {100 * self.high:+.0f}); "
                f"Fisher's exact test p = {self.p_value:.2g}")


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of Fisher's exact test for the table [[k1, n1 - k1], [k2, n2 - k2]]."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError("counts must satisfy 0 <= k <= n")
    total, col = n1 + n2, k1 + k2
    lo, hi = max(0, col - n2), min(col, n1)

    def logp(a):  # hypergeometric: a of the col successes fall in the first row
        return (_lchoose(n1, a) + _lchoose(n2, col - a)) - _lchoose(total, col)

    seen = logp(k1)
    # tables no more likely than the one seen (with scipy's relative tolerance for ties in floating point)
    p = sum(math.exp(logp(a)) for a in range(lo, hi + 1) if logp(a) <= seen + 1e-7 * abs(seen) + 1e-12)
    return min(1.0, p)


def _lchoose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def rate_difference(k1: int, n1: int, k2: int, n2: int) -> RateDifference:
    """k2/n2 - k1/n1 with Newcombe's hybrid score interval and Fisher's exact p."""
    if n1 < 1 or n2 < 1:
        raise ValueError("both arms need at least one run")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return RateDifference(k1, n1, k2, n2, d, max(-1.0, low), min(1.0, high), fisher_exact(k1, n1, k2, n2))
