"""The `risk:` section: sensitive paths, business hours, level thresholds and weights."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from bot.config.base import ConfigModel, Loc, invalid, problems_error
from bot.config.types import Text

RiskLevelName = Literal["low", "medium", "high", "critical"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(name: str) -> int:
    name = name.strip().lower()
    for names in (_WEEKDAYS, _FULL_WEEKDAYS):
        if name in names:
            return names.index(name)
    raise invalid(f"'{name}' is not a weekday: use mon, tue, wed, thu, fri, sat or sun")


def _parse_days(value: object) -> object:
    """`"mon-fri"`, `"mon,wed,fri"`, `"fri-mon"` (wraps) or a list of names -> weekday ints."""
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    else:
        return value  # let pydantic say what it expected
    days: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
            days.add(item)
        elif isinstance(item, str) and "-" in item:
            first, _, last = item.partition("-")
            start, end = _weekday(first), _weekday(last)
            days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
        elif isinstance(item, str):
            days.add(_weekday(item))
        else:
            raise invalid(f"'{item}' is not a weekday")
    if not days:
        raise invalid("must name at least one weekday, like 'mon-fri'")
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _parse_clock(value: object) -> object:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 17:00 as the base-60 number 1020.
        raise invalid(
            f'must be a time like "17:00" in quotes (YAML read an unquoted time as {value})'
        )
    if isinstance(value, str):
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value.strip())
        if match:
            return time(int(match[1]), int(match[2]))
    raise invalid(f"'{value}' is not a time: use HH:MM, like \"09:00\"")


Weekdays = Annotated[
    frozenset[int],
    BeforeValidator(_parse_days),
    PlainSerializer(_format_days, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "examples": ["mon-fri", "mon,tue,wed"]}),
]
ClockTime = Annotated[
    time,
    BeforeValidator(_parse_clock),
    PlainSerializer(lambda value: f"{value:%H:%M}", return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$"}),
]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid(
            f"unknown time zone '{value}': use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None
    return value


class BusinessHours(ConfigModel):
    """When a deploy counts as inside business hours (weekdays are 0 = Monday .. 6 = Sunday)."""

    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    days: Weekdays = Field(frozenset(range(5)), json_schema_extra={"default": "mon-fri"})
    start: ClockTime = time(9, 0)
    end: ClockTime = time(17, 0)

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.start >= self.end:
            raise invalid(f"must be later than start ({self.start:%H:%M})", "end")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def contains(self, moment: datetime) -> bool:
        """Is this (timezone-aware) moment inside business hours?"""
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end


Score = Annotated[int, Field(ge=0, le=100, strict=True)]


class RiskLevels(ConfigModel):
    """Score thresholds (0..100): a score at or above a threshold has that level."""

    medium: Score = 30
    high: Score = 60
    critical: Score = 85

    @model_validator(mode="after")
    def _check_ascending(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if self.high <= self.medium:
            problems.append((("high",), f"must be greater than medium ({self.medium})"))
        if self.critical <= self.high:
            problems.append((("critical",), f"must be greater than high ({self.high})"))
        if problems:
            raise problems_error(problems)
        return self

    def level_for(self, score: float) -> RiskLevelName:
        if score >= self.critical:
            return "critical"
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"


class RiskConfig(ConfigModel):
    """How releases are scored. Everything has a default, so `risk` may be left out."""

    sensitive_paths: list[Text] = []
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    levels: RiskLevels = Field(default_factory=RiskLevels)
    weights: dict[str, Annotated[float, Field(ge=0)]] = {}
