"""Rank statistics for baseline analysis: the Mann-Whitney U test and medians.

    result = mann_whitney_u(after, before)
    result.u, result.z, result.p_value      # two-sided, normal approximation

The test asks whether one sample tends to hold larger values than the other, without
assuming any distribution: both samples are ranked together (tied values share the mean of
their ranks), `U` counts how often a value of `x` beats a value of `y`, and `U` is compared
with what chance would give through the normal approximation, with the tie correction of
the variance and a continuity correction of 0.5. The numbers match SciPy's
`mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")`.

Pure: no I/O, no third-party code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MannWhitney", "mann_whitney_u", "median", "ranks"]


@dataclass(frozen=True)
class MannWhitney:
    """The outcome of one test: `u` is the statistic of the first sample (`U1`, how many
    pairs it wins, ties counting one half), `z` the standardised distance from chance and
    `p_value` the two-sided probability of a difference at least this large by chance."""

    u: float
    z: float
    p_value: float


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count).

    Raises ValueError on an empty sequence."""
    if not values:
        raise ValueError("the median of no values is not defined")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def ranks(values: Sequence[float]) -> list[float]:
    """The rank of each value (1 for the smallest), tied values sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        shared = (start + end) / 2 + 1  # ranks start + 1 .. end + 1, averaged
        for position in range(start, end + 1):
            result[order[position]] = shared
        start = end + 1
    return result


def _tie_term(values: Sequence[float]) -> float:
    """Sum of t**3 - t over the groups of tied values (t: the group's size)."""
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return float(sum(t**3 - t for t in counts.values()))


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test of `x` against `y` (normal approximation).

    Raises ValueError when either sample is empty or holds NaN. When every value is the
    same there is nothing to rank: z is 0 and the p-value 1.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    pooled = [*x, *y]
    if any(math.isnan(v) for v in pooled):
        raise ValueError("samples must not hold NaN")
    ranked = ranks(pooled)
    u1 = sum(ranked[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - _tie_term(pooled) / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return MannWhitney(u=u1, z=0.0, p_value=1.0)
    # SciPy's two-sided form: the larger U, with the continuity correction towards the mean.
    z = (max(u1, u2) - mean - 0.5) / math.sqrt(variance)
    p_value = min(1.0, math.erfc(z / math.sqrt(2)))  # 2 * P(Z > z)
    return MannWhitney(u=u1, z=z, p_value=max(p_value, 0.0))
