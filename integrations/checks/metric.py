"""What the metric runners (Prometheus range, Datadog, New Relic NRQL) share: reading the
check's bounds and window, reducing samples to one number, and the result line.

A series is reduced by the check's `reduce`:

- `max` (the default): the worst moment of the window. A spike fails the check, which is
  what a post-deploy check is for;
- `avg`: the mean of the samples, for noisy series where one spike says little;
- `last`: the newest sample, the state the window ended in.

With several series, **thresholds apply to the worst series** as for instant queries: `max`
is compared with the largest reduced value and `min` with the smallest. NaN samples (0/0, a
ratio over no traffic) and missing points are left out; a series with no sample left is
no data. The result line reads "max over 10m = 0.004 <= max 0.01", and the
evidence carries value, threshold, query and `link` (shown as "query" in the thread).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.ports import CheckResult
from integrations.checks import duration_seconds, format_number

REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "max": max,
    "avg": lambda values: sum(values) / len(values),
    "last": lambda values: values[-1],
}

NO_DATA = "no data: the query returned no samples in the window"


class Misconfigured(ValueError):
    """The check dict cannot be used (said in the failed result)."""


@dataclass(frozen=True)
class Threshold:
    max: float | None
    min: float | None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Threshold:
        bounds = cls(_number(config.get("max"), "max"), _number(config.get("min"), "min"))
        if bounds.max is None and bounds.min is None:
            raise Misconfigured("set max, min or both")
        return bounds

    def to_evidence(self) -> dict[str, float]:
        found = {"max": self.max, "min": self.min}
        return {key: value for key, value in found.items() if value is not None}


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Misconfigured(f"{name} must be a number, got {value!r}")
    return float(value)


def text(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Misconfigured(f"{key} is empty")
    return value


def window_seconds(config: Mapping[str, Any], key: str = "window", default: float = 600) -> float:
    value = config.get(key)
    if value is None:
        return default
    try:
        return duration_seconds(value)
    except ValueError as error:
        raise Misconfigured(f"{key}: {error}") from None


def reducer(config: Mapping[str, Any]) -> str:
    name = config.get("reduce") or "max"
    if name not in REDUCERS:
        raise Misconfigured(f"reduce must be max, avg or last, got {name!r}")
    return str(name)


def window_label(seconds: float) -> str:
    """600 -> "10m", 90 -> "90s", 3600 -> "1h"."""
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def reduce_series(series: Iterable[list[float | None]], how: str) -> list[float]:
    """One number per series that has samples left once NaN and missing points are out."""
    reduced: list[float] = []
    for values in series:
        kept = [v for v in values if v is not None and not math.isnan(v)]
        if kept:
            reduced.append(REDUCERS[how](kept))
    return reduced


def judge(
    reduced: list[float],
    *,
    what: str,
    threshold: Threshold,
    evidence: dict[str, Any],
) -> CheckResult:
    """Compare the worst series with the threshold: "max over 10m = 0.2 <= max 1" (the thread
    line names the check before it)."""
    evidence["series"] = len(reduced)
    if not reduced:
        return failed(NO_DATA, evidence)
    problems: list[str] = []
    value = max(reduced) if threshold.max is not None else min(reduced)
    if threshold.max is not None and not max(reduced) <= threshold.max:
        value = max(reduced)
        problems.append(f"> max {format_number(threshold.max)}")
    elif threshold.min is not None and not min(reduced) >= threshold.min:
        value = min(reduced)
        problems.append(f"< min {format_number(threshold.min)}")
    evidence["value"] = value
    if problems:
        return failed(f"{what} = {format_number(value)} {problems[0]}", evidence)
    limits = []
    if threshold.max is not None:
        limits.append(f"<= max {format_number(threshold.max)}")
    if threshold.min is not None:
        limits.append(f">= min {format_number(threshold.min)}")
    summary = f"{what} = {format_number(value)} {' and '.join(limits)}"
    return CheckResult(passed=True, summary=summary, evidence=evidence)


def failed(reason: str, evidence: dict[str, Any], *, error: str | None = None) -> CheckResult:
    if error is not None:
        evidence["error"] = error
    return CheckResult(passed=False, summary=reason, evidence=evidence)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def clip(value: str, limit: int = 300) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
