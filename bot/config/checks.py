"""The `verify:` section of an environment: post-deploy HTTP and Prometheus checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from bot.config.base import ConfigModel, Loc, invalid, problems_error
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
        if self.max is None and self.min is None:
            raise invalid("set max, min or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise invalid(f"must not be greater than max ({self.max})", "min")
        return self


class VerifyCheck(ConfigModel):
    """One post-deploy check, run at each offset in `at` after the deploy lands."""

    name: Text
    http: HttpCheck | None = None
    prometheus: PrometheusCheck | None = None
    at: Annotated[list[NonNegativeDuration], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if (self.http is None) == (self.prometheus is None):
            problems.append(((), "set exactly one of http or prometheus"))
        seen: set[timedelta] = set()
        for index, offset in enumerate(self.at):
            if offset in seen:
                problems.append((("at", index), f"{format_duration(offset)} is listed twice"))
            seen.add(offset)
        if problems:
            raise problems_error(problems)
        return self
