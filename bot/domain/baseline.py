"""Baseline analysis: is the release worse than what ran before it?

    verdict = judge(after, before, rule=BaselineRule(direction="increase_is_bad",
                                                     min_change=10.0, alpha=0.05))
    verdict.outcome          # "pass" | "fail" | "inconclusive"
    verdict.line()           # "median 0.02 after vs 0.01 before (+100%), p=0.0009: fail"

The samples of the window after the deploy are compared with those of the baseline (the
same-length window before the deploy, or a baseline series such as the stable pods beside a
canary) by a Mann-Whitney U test (`bot.domain.stats`):

- **inconclusive** when either window has fewer than `min_samples` samples, when the
  p-value is above `alpha` (the difference may be chance), or when the medians moved by
  less than `min_change` percent (a real but negligible change);
- **fail** when the difference is significant, at least `min_change`, and in the bad
  direction (`increase_is_bad`: error ratios, latencies; `decrease_is_bad`: throughput);
- **pass** when it is significant and large, in the good direction.

`chart` draws both windows as polylines for the dashboard (an SVG's coordinates).
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.domain.stats import mann_whitney_u, median

Direction = Literal["increase_is_bad", "decrease_is_bad"]
Outcome = Literal["pass", "fail", "inconclusive"]

PASS: Outcome = "pass"
FAIL: Outcome = "fail"
INCONCLUSIVE: Outcome = "inconclusive"


@dataclass(frozen=True)
class BaselineRule:
    """How a baseline comparison is judged (`min_change` in percent)."""

    direction: Direction = "increase_is_bad"
    min_change: float = 10.0
    alpha: float = 0.05
    min_samples: int = 8


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    median_after: float | None
    median_before: float | None
    change: float | None  # percent, relative to the baseline's median; inf from 0
    p_value: float | None
    reason: str  # why, in a few words

    def line(self) -> str:
        """One line for the thread: medians, change, p-value and the verdict with its reason."""
        if self.median_after is None or self.median_before is None:
            return f"{self.outcome}: {self.reason}"
        p = f", p={self.p_value:.2g}" if self.p_value is not None else ""
        return (
            f"median {_num(self.median_after)} after vs {_num(self.median_before)} before "
            f"({percent(self.change)}{p}): {self.outcome}, {self.reason}"
        )

    def to_evidence(self) -> dict[str, Any]:
        return {
            "verdict": self.outcome,
            "median_after": self.median_after,
            "median_before": self.median_before,
            "change_percent": None
            if self.change is None or math.isinf(self.change)
            else round(self.change, 4),
            "p_value": self.p_value,
            "reason": self.reason,
        }


def percent(change: float | None) -> str:
    """`100.0` -> "+100%", `-12.345` -> "-12.3%", inf -> "+inf%"."""
    if change is None:
        return "n/a"
    if math.isinf(change):
        return "+inf%" if change > 0 else "-inf%"
    return f"{change:+.3g}%"


def _num(value: float) -> str:
    return f"{value:.4g}"


def relative_change(after: float, before: float) -> float:
    """The change from `before` to `after` in percent of `before` (0 -> 0 is no change)."""
    if before == 0:
        return 0.0 if after == 0 else math.copysign(math.inf, after)
    return (after - before) / abs(before) * 100


def judge(after: Sequence[float], before: Sequence[float], *, rule: BaselineRule) -> Verdict:
    """The verdict on `after` against `before` (NaN samples are left out)."""
    after = [v for v in after if not math.isnan(v)]
    before = [v for v in before if not math.isnan(v)]
    if len(after) < rule.min_samples or len(before) < rule.min_samples:
        return Verdict(
            INCONCLUSIVE,
            median(after) if after else None,
            median(before) if before else None,
            None,
            None,
            f"too few samples ({len(after)} after, {len(before)} before; "
            f"at least {rule.min_samples} each)",
        )
    m_after, m_before = median(after), median(before)
    change = relative_change(m_after, m_before)
    p_value = mann_whitney_u(after, before).p_value
    if p_value > rule.alpha:
        why = f"no significant difference (p above {rule.alpha:g})"
        return Verdict(INCONCLUSIVE, m_after, m_before, change, p_value, why)
    if abs(change) < rule.min_change:
        why = f"change below the minimum of {rule.min_change:g}%"
        return Verdict(INCONCLUSIVE, m_after, m_before, change, p_value, why)
    worse = change > 0 if rule.direction == "increase_is_bad" else change < 0
    word = "an increase" if rule.direction == "increase_is_bad" else "a decrease"
    if worse:
        return Verdict(FAIL, m_after, m_before, change, p_value, f"{word} is bad")
    return Verdict(PASS, m_after, m_before, change, p_value, "better than the baseline")


# --- the chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """Both windows drawn in one box: each series as polyline points "x,y x,y ..." over the
    window's relative time, with the value range for the axis labels."""

    width: int
    height: int
    after: str
    before: str
    low: float
    high: float


def chart(evidence: Mapping[str, Any], *, width: int = 320, height: int = 96) -> Chart | None:
    """The chart of a baseline check's stored samples (`evidence["samples"]`), or None."""
    samples = evidence.get("samples") if isinstance(evidence, Mapping) else None
    if not isinstance(samples, Mapping):
        return None
    after, before = _points(samples.get("after")), _points(samples.get("before"))
    if not after and not before:
        return None
    values = [v for _, v in (*after, *before)]
    low, high = min(values), max(values)
    span = (high - low) or abs(high) or 1.0
    pad = 4

    def line(points: list[tuple[float, float]]) -> str:
        if not points:
            return ""
        start, end = points[0][0], points[-1][0]
        length = (end - start) or 1.0
        return " ".join(
            f"{pad + (t - start) / length * (width - 2 * pad):.1f},"
            f"{height - pad - (v - low) / span * (height - 2 * pad):.1f}"
            for t, v in points
        )

    return Chart(width, height, line(after), line(before), low, high)


def _points(raw: object) -> list[tuple[float, float]]:
    found: list[tuple[float, float]] = []
    if not isinstance(raw, list):
        return found
    for pair in raw:
        try:
            t, v = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            found.append((t, v))
    return found
