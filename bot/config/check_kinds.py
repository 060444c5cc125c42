"""The metric checks of a `verify:` entry beyond HTTP and instant Prometheus queries.

- `prometheus_range`: a range query (`query_range`) over the `window` before the check runs,
  at `step` resolution, reduced to one number by `reduce` (max, avg or last);
- `datadog`: a Datadog metric query (`GET /api/v1/query`) over the `window`, reduced the same
  way; the API and application keys are read from the environment variables named here;
- `nrql`: a New Relic NRQL query through NerdGraph; the first number of the first result row
  (or the `field` named) is the value.

Each passes while its value stays within `max`/`min`. `link` replaces the query link shown
in the thread (a dashboard of your own, say).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from bot.config.base import ConfigModel, invalid
from bot.config.types import EnvVarName, PositiveDuration, Text, Url

CHECK_KINDS = (
    "http",
    "prometheus",
    "prometheus_range",
    "datadog",
    "nrql",
    "baseline",
    "burn_rate",
)
"""The keys of a `verify:` check that name its kind; exactly one is set."""

Reduce = Literal["max", "avg", "last"]

DATADOG_SITES = (
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
    "us2.ddog-gov.com",
)
DatadogSite = Literal[
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
    "us2.ddog-gov.com",
]
NewRelicRegion = Literal["us", "eu"]


def check_bounds(high: float | None, low: float | None) -> None:
    """A metric check needs a threshold: max, min or both, and min not above max."""
    if high is None and low is None:
        raise invalid("set max, min or both")
    if high is not None and low is not None and low > high:
        raise invalid(f"must not be greater than max ({high})", "min")


class _Bounded(ConfigModel):
    max: float | None = None
    min: float | None = None
    link: Url | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        check_bounds(self.max, self.min)
        return self


class PrometheusRangeCheck(_Bounded):
    """A range query over the window before the check runs, reduced to one number."""

    url: Url
    query: Text
    window: PositiveDuration = timedelta(minutes=10)
    step: PositiveDuration = timedelta(seconds=30)
    reduce: Reduce = "max"

    @model_validator(mode="after")
    def _check_step(self) -> Self:
        if self.step > self.window:
            raise invalid("must not be longer than window", "step")
        return self


class DatadogCheck(_Bounded):
    """A Datadog metric query over the window before the check runs, reduced to one number."""

    site: DatadogSite = "datadoghq.com"
    api_key_env: EnvVarName
    app_key_env: EnvVarName
    query: Text
    window: PositiveDuration = timedelta(minutes=10)
    reduce: Reduce = "max"


class NrqlCheck(_Bounded):
    """A New Relic NRQL query run through NerdGraph for one account."""

    region: NewRelicRegion = "us"
    api_key_env: EnvVarName
    account_id: Annotated[int, Field(gt=0, strict=True)]
    query: Text
    field: Text | None = None  # the result field to compare; default: the first number
