"""Service level objectives (`slo:` of a service) and the checks built on telemetry:
baseline analysis (`baseline:`) and the SLO's burn rate (`burn_rate:`).

An SLO is an SLI written as two Prometheus queries, `good` and `total`, each with `$window`
where the range goes (`sum(rate(http_requests_total{job="checkout",code!~"5.."}[$window]))`),
an `objective` in percent and the `window` it holds over. Releasebot fills in the window it
measures (the SLO's own, and 1h, 5m, 6h and 30m for the burn rates).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from bot.config.base import ConfigModel, invalid
from bot.config.types import PositiveDuration, Text, Url, format_duration

WINDOW = "$window"


def _percent(value: object) -> object:
    """`"10%"` -> 10.0; a number stays a number."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1])
        except ValueError:
            return value
    return value


Percent = Annotated[
    float,
    BeforeValidator(_percent),
    Field(ge=0),
    WithJsonSchema({"type": ["string", "number"], "examples": ["10%", 10]}),
]


class Slo(ConfigModel):
    """A service level objective: `objective` percent of `total` must be `good` over `window`."""

    url: Url  # the Prometheus server
    good: Text
    total: Text
    objective: Annotated[float, Field(gt=0, lt=100)]
    window: PositiveDuration = timedelta(days=30)

    @model_validator(mode="after")
    def _check_window_placeholder(self) -> Self:
        for key in ("good", "total"):
            if WINDOW not in getattr(self, key):
                raise invalid(f"must contain {WINDOW} where the range goes, like [{WINDOW}]", key)
        return self

    @property
    def window_label(self) -> str:
        return format_duration(self.window)


class BaselineCheck(ConfigModel):
    """Compare the window after the deploy with a baseline: the same-length window before it
    (`compare: before`), or another series over the same window (`compare: series` with
    `baseline_query`, e.g. the stable pods beside a canary)."""

    url: Url
    query: Text
    window: PositiveDuration = timedelta(minutes=10)
    step: PositiveDuration = timedelta(seconds=30)
    compare: Literal["before", "series"] = "before"
    baseline_query: Text | None = None
    direction: Literal["increase_is_bad", "decrease_is_bad"] = "increase_is_bad"
    min_change: Percent = 10.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    min_samples: Annotated[int, Field(ge=3, strict=True)] = 8
    on_inconclusive: Literal["pass", "fail"] = "pass"
    link: Url | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.compare == "series" and self.baseline_query is None:
            raise invalid("is required with compare: series", "baseline_query")
        if self.compare == "before" and self.baseline_query is not None:
            raise invalid("is used only with compare: series", "baseline_query")
        if self.step > self.window:
            raise invalid("must not be longer than window", "step")
        return self


class BurnRateCheck(ConfigModel):
    """Fail while the service's SLO burns faster than `max` over both `window` and
    `short_window` (a spike already over does not fail it). Needs the service's `slo:`,
    which releasebot copies into `slo` here."""

    window: PositiveDuration = timedelta(hours=1)
    short_window: PositiveDuration = timedelta(minutes=5)
    max: Annotated[float, Field(gt=0)] = 14.4
    slo: Slo | None = Field(None, description="Filled in from the service's slo: do not set.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.short_window >= self.window:
            raise invalid("must be shorter than window", "short_window")
        return self


def burn_rate_with(check: BurnRateCheck, slo: Slo) -> dict[str, Any]:
    """The check's fields with the service's SLO filled in."""
    return {**check.model_dump(), "slo": slo}
