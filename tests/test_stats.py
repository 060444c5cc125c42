"""The Mann-Whitney U test and medians, against numbers SciPy 1.17 gives for the same samples
(`scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")`), written
down here: SciPy is not a dependency."""

from __future__ import annotations

import math

import pytest

from bot.domain.baseline import BaselineRule, chart, judge, relative_change
from bot.domain.stats import mann_whitney_u, median, ranks

# (x, y, U1, p-value) as SciPy computes them.
KNOWN = [
    ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 0.0, 0.012185780355344813),
    ([1, 2, 2, 3], [2, 3, 3, 4], 3.0, 0.1720337089218229),  # ties across the samples
    (
        [0.010, 0.012, 0.011, 0.009, 0.013, 0.010, 0.011, 0.012],
        [0.020, 0.022, 0.019, 0.021, 0.023, 0.020, 0.018, 0.024],
        0.0,
        0.0009068567509923489,
    ),
    ([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8], 35.5, 0.7180679342556091),
]


@pytest.mark.parametrize("x,y,u,p", KNOWN)
def test_u_and_the_p_value_match_scipy(x: list[float], y: list[float], u: float, p: float) -> None:
    result = mann_whitney_u(x, y)
    assert result.u == u
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert mann_whitney_u(y, x).p_value == pytest.approx(p, rel=1e-9)  # two-sided


def test_the_first_case_by_hand() -> None:
    # U2 = 25, mean 12.5, sigma = sqrt(5*5*11/12); z = (25 - 12.5 - 0.5) / sigma.
    z = 12 / math.sqrt(25 * 11 / 12)
    assert mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).z == pytest.approx(z)


def test_identical_samples_give_p_one_and_bad_input_is_refused() -> None:
    assert mann_whitney_u([1, 1, 1], [1, 1, 1]).p_value == 1.0
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_u([math.nan], [1.0])


def test_ranks_share_ties_and_medians() -> None:
    assert ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4]
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        median([])


BEFORE = [0.010, 0.012, 0.011, 0.009, 0.013, 0.010, 0.011, 0.012]
DOUBLED = [v * 2 for v in BEFORE]


def test_a_doubled_error_ratio_fails_and_a_halved_one_passes() -> None:
    rule = BaselineRule(direction="increase_is_bad", min_change=10, alpha=0.05)
    verdict = judge(DOUBLED, BEFORE, rule=rule)
    assert verdict.outcome == "fail"
    assert verdict.change == pytest.approx(100.0)
    assert verdict.line().startswith("median 0.022 after vs 0.011 before (+100%, p=")
    assert judge(BEFORE, DOUBLED, rule=rule).outcome == "pass"
    assert judge(BEFORE, DOUBLED, rule=BaselineRule(direction="decrease_is_bad")).outcome == "fail"


def test_inconclusive_for_few_samples_chance_or_a_small_effect() -> None:
    rule = BaselineRule(min_change=10, alpha=0.05, min_samples=8)
    few = judge(DOUBLED[:5], BEFORE, rule=rule)
    assert (few.outcome, few.reason) == (
        "inconclusive",
        "too few samples (5 after, 8 before; at least 8 each)",
    )
    same = judge(list(reversed(BEFORE)), BEFORE, rule=rule)
    assert same.outcome == "inconclusive" and "no significant difference" in same.reason
    small = judge(DOUBLED, BEFORE, rule=BaselineRule(min_change=150))  # significant, +100%
    assert small.outcome == "inconclusive" and "below the minimum of 150%" in small.reason


def test_relative_change_from_zero_and_the_chart_scales_both_windows() -> None:
    assert relative_change(0, 0) == 0
    assert relative_change(1, 0) == math.inf
    drawn = chart({"samples": {"after": [[0, 2], [30, 4]], "before": [[0, 1], [30, 2]]}})
    assert drawn is not None and (drawn.low, drawn.high) == (1, 4)
    assert drawn.after == "4.0,62.7 316.0,4.0"  # 2 is a third of the way up
    assert chart({"summary": "no samples"}) is None
