"""Field types of `releasebot.yaml`: durations, Slack ids, names, URLs and times with offsets.

Each type validates with a plain-English message and describes itself in the JSON Schema the
way a user writes it (`"4h"`, `"#deploys"`, `PD_ROUTING_KEY`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from bot.config.base import invalid

_DURATION_RE = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")
_DURATION_PART_RE = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}


def parse_duration(value: object) -> timedelta:
    """`"500ms"`, `"30s"`, `"5m"`, `"4h"`, `"1d"`, combinations like `"1h30m"`, or int seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and _DURATION_RE.fullmatch(value.strip()):
        total = timedelta(0)
        for number, unit in _DURATION_PART_RE.findall(value):
            total += int(number) * _UNIT[unit]
        return total
    raise PydanticCustomError(
        "duration",
        'invalid duration \'{value}\': use a number with ms, s, m, h or d, like "30s" or "4h"',
        {"value": str(value)},
    )


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`: `timedelta(hours=1, minutes=30)` -> `"1h30m"`."""
    if value < timedelta(0):
        return "-" + format_duration(-value)
    ms = (value.days * 86_400 + value.seconds) * 1000 + value.microseconds // 1000
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise invalid("must be longer than 0s")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise invalid("must not be negative")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+(ms|s|m|h|d))+$",
            "description": 'A duration such as "500ms", "30s", "5m", "4h", "1d" or "1h30m".',
            "examples": ["30s", "4h"],
        }
    ),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
NonNegativeDuration = Annotated[Duration, AfterValidator(_not_negative)]


def matching(regex: str, message: str) -> AfterValidator:
    """A str check with a plain-English message; `{value}` in it names the bad input."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise invalid(message.format(value=value))
        return value

    return AfterValidator(check)


def string_schema(regex: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": f"^{regex}$"})


_PRINCIPAL = r"[SUW][A-Z0-9]{2,}"
_USER = r"[UW][A-Z0-9]{2,}"
_CHANNEL = r"#[^\s#]+|[CG][A-Z0-9]{2,}"
_ENV_VAR = r"[A-Z_][A-Z0-9_]*"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

SlackPrincipal = Annotated[
    str,
    matching(_PRINCIPAL, "'{value}' is not a Slack user id (U..., W...) or user-group id (S...)"),
    string_schema(_PRINCIPAL),
]
SlackUserId = Annotated[
    str,
    matching(_USER, "'{value}' is not a Slack user id (U... or W...)"),
    string_schema(_USER),
]
SlackChannel = Annotated[
    str,
    matching(_CHANNEL, "'{value}' is not a Slack channel: use '#name' or an id (C... or G...)"),
    string_schema(f"({_CHANNEL})"),
]
EnvVarName = Annotated[
    str,
    matching(
        _ENV_VAR,
        "'{value}' is not an environment variable name (A-Z, 0-9 and _, like "
        "PD_CHECKOUT_ROUTING_KEY); name the variable that holds the secret, not the secret",
    ),
    string_schema(_ENV_VAR),
]
Name = Annotated[
    str,
    matching(_NAME, "'{value}' is not a valid name: use letters, digits, '-', '_' and '.'"),
    string_schema(_NAME),
]
Text = Annotated[str, Field(min_length=1)]


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"'{value}' is not an http(s) URL")
    return value


Url = Annotated[
    str, AfterValidator(_check_url), WithJsonSchema({"type": "string", "format": "uri"})
]


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise invalid(
            f"'{value.isoformat()}' must include a UTC offset, like 2026-12-23T00:00:00+01:00"
        )
    return value


OffsetDatetime = Annotated[datetime, AfterValidator(_require_offset)]
