"""The `verify:` section of an environment: post-deploy HTTP, Prometheus (instant and range),
Datadog metric and New Relic NRQL checks, baseline analysis and the SLO's burn rate."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from bot.config.base import ConfigModel, Loc, invalid, problems_error
from bot.config.check_kinds import (
    CHECK_KINDS,
    DatadogCheck,
    NrqlCheck,
    PrometheusRangeCheck,
    check_bounds,
)
from bot.config.slo import BaselineCheck, BurnRateCheck
from bot.config.types import NonNegativeDuration, PositiveDuration, Text, Url, format_duration


class HttpCheck(ConfigModel):
    """GET a URL; pass on the expected status (and body text or JSON field, if given)."""

    url: Url
    expect_status: Annotated[int, Field(ge=100, le=599, strict=True)] = 200
    timeout: PositiveDuration = timedelta(seconds=5)
    body_contains: str | None = None
    json_field: Text | None = None
    json_equals: Any = None

    @model_validator(mode="after")
    def _check_json(self) -> Self:
        if "json_equals" in self.model_fields_set and self.json_field is None:
            raise invalid("needs json_field (which field to compare)", "json_equals")
        return self


class PrometheusCheck(ConfigModel):
    """Run an instant query; pass while the value stays within max/min."""

    url: Url
    query: Text
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        check_bounds(self.max, self.min)
        return self


class VerifyCheck(ConfigModel):
    """One post-deploy check, run at each offset in `at` after the deploy lands."""

    name: Text
    http: HttpCheck | None = None
    prometheus: PrometheusCheck | None = None
    prometheus_range: PrometheusRangeCheck | None = None
    datadog: DatadogCheck | None = None
    nrql: NrqlCheck | None = None
    baseline: BaselineCheck | None = None
    burn_rate: BurnRateCheck | None = None
    at: Annotated[list[NonNegativeDuration], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if sum(getattr(self, kind) is not None for kind in CHECK_KINDS) != 1:
            problems.append(
                (
                    (),
                    "set exactly one of http or prometheus (or prometheus_range, datadog, nrql, "
                    "baseline, burn_rate)",
                )
            )
        seen: set[timedelta] = set()
        for index, offset in enumerate(self.at):
            if offset in seen:
                problems.append((("at", index), f"{format_duration(offset)} is listed twice"))
            seen.add(offset)
        if problems:
            raise problems_error(problems)
        return self

    @property
    def kind(self) -> str:
        """The kind of this check: the one of `CHECK_KINDS` whose section is set."""
        return next(kind for kind in CHECK_KINDS if getattr(self, kind) is not None)

    def spec_at(self, deployed_at: datetime) -> dict[str, Any]:
        """What a check run is given (`model_dump(mode="json")`); a baseline check also
        learns when the deploy landed, where its "before" window ends."""
        spec = self.model_dump(mode="json")
        if self.baseline is not None:
            spec["baseline"]["deployed_at"] = deployed_at.timestamp()
        return spec
