"""The Aalen-Johansen cumulative incidence: hand-worked cases and lifelines."""

import numpy as np
import pytest

from rote.reporting.results import kaplan_meier
from rote.reporting.survival import CENSORED, COMPETING, MEMORISED, aalen_johansen, fmt_median, outcome_kind


def test_hand_worked_case_with_a_tie_across_kinds():
    # five runs: memorised at 1; at 2 one memorised and one died; one censored at 3; memorised at 4
    inc = aalen_johansen([1, 2, 2, 3, 4], [1, 2, 1, 0, 1])
    assert inc.times == [1, 2, 4]
    assert inc.at_risk == [5, 4, 1] and inc.events == [1, 1, 1] and inc.other == [0, 1, 0]
    # F(1) = 1/5; S(1) = 4/5; F(2) = 0.2 + 0.8 * 1/4; S(2) = 0.8 * 2/4 = 0.4; F(4) = 0.4 + 0.4 * 1/1
    assert inc.incidence == pytest.approx([0.2, 0.4, 0.8])
    assert inc.median == 4
    assert (inc.n, inc.n_events, inc.n_competing, inc.n_censored) == (5, 3, 1, 1)
    assert inc.at(0.5) == 0.0 and inc.at(2) == pytest.approx(0.4) and inc.at(3.9) == pytest.approx(0.4)
    # Kaplan-Meier that censors the dead run instead gives every survivor the event: 1 - F would be 0
    km = kaplan_meier([1, 2, 2, 3, 4], [True, False, True, False, True])
    assert 1 - km.survival[-1] == pytest.approx(1.0)


def test_without_competing_events_it_is_one_minus_kaplan_meier():
    t = [3, 5, 5, 8, 10, 12, 12, 15]
    obs = [True, True, False, True, False, True, True, False]
    inc = aalen_johansen(t, [1 if o else 0 for o in obs])
    km = kaplan_meier(t, obs)
    assert inc.times == km.times
    assert np.allclose(inc.incidence, 1 - np.asarray(km.survival))
    assert inc.median == km.median


def test_four_of_ten_memorised_has_no_median():
    # six runs died: the incidence of memorisation tops out at 0.4, so no median (Kaplan-Meier would give one)
    t = [30, 31, 33, 35, 5, 7, 9, 12, 13, 19]
    kinds = [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    inc = aalen_johansen(t, kinds)
    assert inc.final == pytest.approx(0.4)
    assert inc.median is None and fmt_median(inc) == "not reached"
    assert kaplan_meier(t, [k == 1 for k in kinds]).median is not None


def test_censored_only_and_empty():
    inc = aalen_johansen([10, 10], [0, 0])
    assert inc.times == [] and inc.final == 0.0 and inc.median is None
    with pytest.raises(ValueError):
        aalen_johansen([1, 2], [1])
    with pytest.raises(ValueError):
        aalen_johansen([1, 2], [1, -1])


def test_outcomes_map_to_kinds():
    assert outcome_kind("memorized") == MEMORISED
    assert outcome_kind("collapsed") == COMPETING == outcome_kind("diverged")
    assert outcome_kind("unfinished") == CENSORED


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_lifelines(seed):
    lifelines = pytest.importorskip("lifelines", reason="lifelines is in the dev extra")
    rng = np.random.default_rng(seed)
    n = 40
    # distinct times: lifelines jitters ties across kinds, which would make the two differ for that reason alone
    t = rng.permutation(np.arange(1, n + 1)).astype(float) + rng.random(n) * 0.1
    kinds = rng.choice([0, 1, 2], size=n, p=[0.2, 0.5, 0.3])
    ours = aalen_johansen(t, kinds)
    aj = lifelines.AalenJohansenFitter(calculate_variance=True).fit(t, kinds, event_of_interest=1)
    ref = aj.cumulative_density_.iloc[:, 0]
    ci = aj.confidence_interval_
    compared = 0
    for time, f, lo, hi, n, d, o in zip(ours.times, ours.incidence, ours.low, ours.high, ours.at_risk, ours.events,
                                        ours.other):
        assert ref.loc[time] == pytest.approx(f, abs=1e-12)
        ref_lo, ref_hi = sorted(float(v) for v in ci.loc[time].values)
        if 0 < f < 1 and n > d + o:  # lifelines' variance divides by n - d, which is 0 when the last run ends
            assert (ref_lo, ref_hi) == pytest.approx((lo, hi), abs=1e-9)
            compared += 1
    assert compared >= len(ours.times) // 2  # most rows carry a band to compare


def test_power_law_fit_recovers_an_exact_law_and_brackets_a_noisy_one():
    from rote.reporting.scaling import fit_power_law

    ns = [500, 1000, 2000, 4000] * 3
    exact = fit_power_law(ns, [3.0 * n ** 0.5 for n in ns])
    assert exact.slope == pytest.approx(0.5) and exact.predict(9000)[0] == pytest.approx(3.0 * 9000 ** 0.5)
    assert exact.slope_low == pytest.approx(0.5) and exact.slope_high == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    noisy = fit_power_law(ns, [3.0 * n ** 0.5 * np.exp(rng.normal(0, 0.2)) for n in ns])
    assert noisy.slope_low < noisy.slope < noisy.slope_high
    t, lo, hi = noisy.predict(20000)
    assert lo < t < hi
    with pytest.raises(ValueError):
        fit_power_law([1000, 1000], [3, 4])
