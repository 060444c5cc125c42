"""The schema of `releasebot.yaml`, and loading it with every problem reported by YAML path.

    config = load_config("releasebot.yaml")      # or parse_config(already_parsed_data)
    found = config.service_for_repo("github", "acme/checkout")   # (name, Service) | None
    config.channel_for("checkout")                               # "#checkout-deploys"

Every model is frozen and refuses unknown keys. Validation never stops at the first problem
when it can go on: `ConfigError.problems` lists them all, each as `"<yaml path>: <message>"`,
for example `services.checkout.environments[1].gate.approvals: must be >= 1`.

Checks that span several keys (a rule about two fields, or one service referring to another
environment) raise one pydantic error of type `releasebot_config` whose context carries
`problems`: `(relative path, message)` pairs, so each lands on the key the user has to edit.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError

from bot.domain.errors import ConfigError

__all__ = [
    "ArgoCDDeploy",
    "BreakGlass",
    "BusinessHours",
    "Config",
    "Deploy",
    "Duration",
    "Environment",
    "Freeze",
    "Gate",
    "GithubWorkflowDeploy",
    "GitlabDeploymentApproval",
    "GitlabTrigger",
    "HttpCheck",
    "Identity",
    "JenkinsDeploy",
    "Oncall",
    "OpsgenieOncall",
    "PagerDutyOncall",
    "PrometheusCheck",
    "QuorumRule",
    "RiskConfig",
    "RiskGate",
    "RiskLevelName",
    "RiskLevels",
    "Service",
    "SlackConfig",
    "Track",
    "VerifyCheck",
    "WebhookDeploy",
    "config_json_schema",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]

Loc = tuple[str | int, ...]
RiskLevelName = Literal["low", "medium", "high", "critical"]

# --------------------------------------------------------------------------------------------
# Problems raised from validators
# --------------------------------------------------------------------------------------------

_PROBLEM = "releasebot_config"


def _problems_error(problems: Sequence[tuple[Loc, str]]) -> PydanticCustomError:
    """One pydantic error carrying several problems, each relative to the failing model."""
    text = "; ".join(f"{_render_path(loc)}: {msg}" if loc else msg for loc, msg in problems)
    return PydanticCustomError(_PROBLEM, "{text}", {"text": text, "problems": tuple(problems)})


def _invalid(message: str, *at: str | int) -> PydanticCustomError:
    return _problems_error([(at, message)])


# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------

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
        raise _invalid("must be longer than 0s")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise _invalid("must not be negative")
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


def _matching(regex: str, message: str) -> AfterValidator:
    """A str check with a plain-English message; `{value}` in it names the bad input."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _invalid(message.format(value=value))
        return value

    return AfterValidator(check)


def _string_schema(regex: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": f"^{regex}$"})


_PRINCIPAL = r"[SUW][A-Z0-9]{2,}"
_USER = r"[UW][A-Z0-9]{2,}"
_CHANNEL = r"#[^\s#]+|[CG][A-Z0-9]{2,}"
_ENV_VAR = r"[A-Z_][A-Z0-9_]*"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

SlackPrincipal = Annotated[
    str,
    _matching(_PRINCIPAL, "'{value}' is not a Slack user id (U..., W...) or user-group id (S...)"),
    _string_schema(_PRINCIPAL),
]
SlackUserId = Annotated[
    str,
    _matching(_USER, "'{value}' is not a Slack user id (U... or W...)"),
    _string_schema(_USER),
]
SlackChannel = Annotated[
    str,
    _matching(_CHANNEL, "'{value}' is not a Slack channel: use '#name' or an id (C... or G...)"),
    _string_schema(f"({_CHANNEL})"),
]
EnvVarName = Annotated[
    str,
    _matching(
        _ENV_VAR,
        "'{value}' is not an environment variable name (A-Z, 0-9 and _, like "
        "PD_CHECKOUT_ROUTING_KEY); name the variable that holds the secret, not the secret",
    ),
    _string_schema(_ENV_VAR),
]
Name = Annotated[
    str,
    _matching(_NAME, "'{value}' is not a valid name: use letters, digits, '-', '_' and '.'"),
    _string_schema(_NAME),
]
Text = Annotated[str, Field(min_length=1)]


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"'{value}' is not an http(s) URL")
    return value


Url = Annotated[
    str, AfterValidator(_check_url), WithJsonSchema({"type": "string", "format": "uri"})
]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys accepted in the YAML besides the fields (a shorthand a before-validator rewrites);
    # they count as known keys for "did you mean" suggestions.
    _input_keys: ClassVar[tuple[str, ...]] = ()


class SlackConfig(_Model):
    """Where the bot talks and who it calls on."""

    default_channel: SlackChannel
    slash_command: Annotated[
        str,
        _matching(
            r"/[a-z0-9_-]+", "must be '/' then lowercase letters, digits, '-' or '_', like /release"
        ),
        _string_schema(r"/[a-z0-9_-]+"),
    ] = "/release"
    release_managers: list[SlackPrincipal] = []
    oncall: list[SlackPrincipal] = []


class Identity(_Model):
    """A Slack user's logins on the code hosts (for the self-approval ban)."""

    github: str | None = None
    gitlab: str | None = None
    email: (
        Annotated[str, _matching(r"[^@\s]+@[^@\s]+", "'{value}' is not an e-mail address")] | None
    ) = None


# ---- risk ----------------------------------------------------------------------------------

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(name: str) -> int:
    name = name.strip().lower()
    for names in (_WEEKDAYS, _FULL_WEEKDAYS):
        if name in names:
            return names.index(name)
    raise _invalid(f"'{name}' is not a weekday: use mon, tue, wed, thu, fri, sat or sun")


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
            raise _invalid(f"'{item}' is not a weekday")
    if not days:
        raise _invalid("must name at least one weekday, like 'mon-fri'")
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _parse_clock(value: object) -> object:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 17:00 as the base-60 number 1020.
        raise _invalid(
            f'must be a time like "17:00" in quotes (YAML read an unquoted time as {value})'
        )
    if isinstance(value, str):
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value.strip())
        if match:
            return time(int(match[1]), int(match[2]))
    raise _invalid(f"'{value}' is not a time: use HH:MM, like \"09:00\"")


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
        raise _invalid(
            f"unknown time zone '{value}': use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None
    return value


class BusinessHours(_Model):
    """When a deploy counts as inside business hours (weekdays are 0 = Monday .. 6 = Sunday)."""

    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    days: Weekdays = Field(frozenset(range(5)), json_schema_extra={"default": "mon-fri"})
    start: ClockTime = time(9, 0)
    end: ClockTime = time(17, 0)

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.start >= self.end:
            raise _invalid(f"must be later than start ({self.start:%H:%M})", "end")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def contains(self, moment: datetime) -> bool:
        """Is this (timezone-aware) moment inside business hours?"""
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end


Score = Annotated[int, Field(ge=0, le=100, strict=True)]


class RiskLevels(_Model):
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
            raise _problems_error(problems)
        return self

    def level_for(self, score: float) -> RiskLevelName:
        if score >= self.critical:
            return "critical"
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"


class RiskConfig(_Model):
    """How releases are scored. Everything has a default, so `risk` may be left out."""

    sensitive_paths: list[Text] = []
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    levels: RiskLevels = Field(default_factory=RiskLevels)
    weights: dict[str, Annotated[float, Field(ge=0)]] = {}


# ---- freezes and break-glass ---------------------------------------------------------------


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _invalid(
            f"'{value.isoformat()}' must include a UTC offset, like 2026-12-23T00:00:00+01:00"
        )
    return value


OffsetDatetime = Annotated[datetime, AfterValidator(_require_offset)]


class Freeze(_Model):
    """A change freeze: deploys into these environments wait (or need break-glass)."""

    environments: Annotated[list[Name], Field(min_length=1)]
    start: OffsetDatetime
    end: OffsetDatetime
    reason: Text

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.end <= self.start:
            raise _invalid(f"must be after start ({self.start.isoformat()})", "end")
        return self

    def covers(self, environment: str) -> bool:
        return "all" in self.environments or environment in self.environments

    def active_at(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


class BreakGlass(_Model):
    """The emergency path through a gate or a freeze."""

    approvers: Annotated[list[SlackPrincipal], Field(min_length=1)]
    second_person: bool = True
    valid_for: PositiveDuration


# ---- services: on-call and tracking --------------------------------------------------------


class PagerDutyOncall(_Model):
    routing_key_env: EnvVarName


class OpsgenieOncall(_Model):
    api_key_env: EnvVarName


class Oncall(_Model):
    """Who is paged when a deploy goes bad; secrets are named, never written here."""

    pagerduty: PagerDutyOncall | None = None
    opsgenie: OpsgenieOncall | None = None

    @model_validator(mode="after")
    def _check_any(self) -> Self:
        if self.pagerduty is None and self.opsgenie is None:
            raise _invalid("set pagerduty or opsgenie")
        return self


_TRACK_KEYS = (
    "github_workflow",
    "github_environment",
    "gitlab_environment",
    "argocd_app",
    "jenkins_job",
)


class Track(_Model):
    """Which CI/CD events belong to this environment."""

    github_workflow: Text | None = None
    github_environment: Text | None = None
    gitlab_environment: Text | None = None
    argocd_app: Text | None = None
    jenkins_job: Text | None = None
    generic: bool = False  # reported through POST /webhooks/generic

    @model_validator(mode="after")
    def _check_any(self) -> Self:
        if not self.generic and all(getattr(self, key) is None for key in _TRACK_KEYS):
            raise _invalid(f"set at least one of {', '.join(_TRACK_KEYS)} or generic: true")
        return self


# ---- gates ---------------------------------------------------------------------------------


class QuorumRule(_Model):
    """`count` distinct people from `approvers` (Slack users or user groups) must approve."""

    approvers: Annotated[list[SlackPrincipal], Field(min_length=1)]
    count: Annotated[int, Field(ge=1, strict=True)]

    @model_validator(mode="after")
    def _check_reachable(self) -> Self:
        people = set(self.approvers)
        if all(not p.startswith("S") for p in people) and self.count > len(people):
            raise _invalid(
                f"needs {self.count} approvals but approvers lists only {len(people)} "
                "people and no user group",
                "count",
            )
        return self


Rules = Annotated[list[QuorumRule], Field(min_length=1)]


class RiskGate(_Model):
    """How one risk level changes the gate: pass it, block it, or demand other rules."""

    auto_approve: bool = False
    blocked: bool = False
    require: Rules | None = None

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        chosen = [key for key in ("auto_approve", "blocked") if getattr(self, key)]
        if self.require is not None:
            chosen.append("require")
        if len(chosen) > 1:
            raise _invalid(
                f"set only one of auto_approve, blocked or require (found {_and(chosen)})"
            )
        return self


def _gate_json_schema(schema: dict[str, Any]) -> None:
    """Let editors accept the `approvals` + `approvers` shorthand too."""
    schema["properties"]["approvals"] = {
        "type": "integer",
        "minimum": 1,
        "description": "Shorthand: this many approvals from `approvers` (one require rule).",
    }
    schema["properties"]["approvers"] = {"type": "array", "items": {"type": "string"}}
    schema["required"] = [key for key in schema.get("required", []) if key != "require"]
    schema["oneOf"] = [{"required": ["require"]}, {"required": ["approvals", "approvers"]}]


class Gate(_Model):
    """A manual gate: every `require` rule must be met by distinct people.

    `approvals: N` with `approvers: [...]` is shorthand for one rule `{approvers, count: N}`.
    """

    model_config = ConfigDict(json_schema_extra=_gate_json_schema)
    _input_keys: ClassVar[tuple[str, ...]] = ("approvals", "approvers")

    require: Rules
    forbid_self_approval: bool = True
    expires_after: PositiveDuration = timedelta(hours=4)
    remind_after: PositiveDuration | None = None
    by_risk: dict[RiskLevelName, RiskGate] = {}

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        has_require, has_count = "require" in data, "approvals" in data
        if has_require and has_count:
            raise _invalid("use either require or approvals + approvers, not both", "approvals")
        if has_require and "approvers" in data:
            raise _invalid(
                "list approvers inside each require rule (or use approvals + approvers "
                "without require)",
                "approvers",
            )
        if not has_count:
            if "approvers" in data:
                raise _invalid("is required with approvers (how many must approve)", "approvals")
            if not has_require:
                raise _invalid("needs require (a list of rules) or approvals + approvers")
            return data
        if "approvers" not in data:
            raise _invalid("is required with approvals (who may approve)", "approvers")
        try:
            rule = QuorumRule.model_validate(
                {"approvers": data["approvers"], "count": data["approvals"]}
            )
        except ValidationError as error:
            # Report on the keys the user wrote: `count` is their `approvals`.
            raise _problems_error(
                [
                    (("approvals", *loc[1:]) if loc[:1] == ("count",) else loc, message)
                    for loc, message in _located(error, QuorumRule)
                ]
            ) from None
        rest = {k: v for k, v in data.items() if k not in ("approvals", "approvers")}
        return {**rest, "require": [rule]}

    @model_validator(mode="after")
    def _check_reminder(self) -> Self:
        if self.remind_after is not None and self.remind_after >= self.expires_after:
            raise _invalid(
                f"must be shorter than expires_after ({format_duration(self.expires_after)})",
                "remind_after",
            )
        return self


# ---- deployers -----------------------------------------------------------------------------


class GithubWorkflowDeploy(_Model):
    """Run a GitHub Actions workflow (workflow_dispatch)."""

    workflow: Text
    ref: Text = "main"
    inputs: dict[str, str] = {}


class GitlabDeploymentApproval(_Model):
    """Approve the waiting GitLab protected-environment deployment."""


class GitlabTrigger(_Model):
    """Start a GitLab pipeline with a trigger token."""

    project: Text
    ref: Text
    token_env: EnvVarName


class ArgoCDDeploy(_Model):
    """Sync an Argo CD application."""

    app: Text


class JenkinsDeploy(_Model):
    """Build a Jenkins job."""

    job: Text
    token_env: EnvVarName | None = None
    user_env: EnvVarName | None = None


class WebhookDeploy(_Model):
    """POST a signed JSON body to a URL of yours."""

    url: Url
    secret_env: EnvVarName


DeployTarget = (
    GithubWorkflowDeploy
    | GitlabDeploymentApproval
    | GitlabTrigger
    | ArgoCDDeploy
    | JenkinsDeploy
    | WebhookDeploy
)
_DEPLOY_KINDS = (
    "github_workflow",
    "gitlab_deployment_approval",
    "gitlab_trigger",
    "argocd",
    "jenkins",
    "webhook",
)


class Deploy(_Model):
    """How the bot starts a deploy (promote, rollback): exactly one kind."""

    github_workflow: GithubWorkflowDeploy | None = None
    gitlab_deployment_approval: GitlabDeploymentApproval | None = None
    gitlab_trigger: GitlabTrigger | None = None
    argocd: ArgoCDDeploy | None = None
    jenkins: JenkinsDeploy | None = None
    webhook: WebhookDeploy | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_empty_mapping(cls, data: object) -> object:
        # `gitlab_deployment_approval:` with nothing after it reads as null in YAML.
        if isinstance(data, dict) and data.get("gitlab_deployment_approval", {}) is None:
            return {**data, "gitlab_deployment_approval": {}}
        return data

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        chosen = [kind for kind in _DEPLOY_KINDS if getattr(self, kind) is not None]
        if len(chosen) != 1:
            found = f" (found {_and(chosen)})" if chosen else ""
            raise _invalid(f"set exactly one of {', '.join(_DEPLOY_KINDS)}{found}")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in _DEPLOY_KINDS if getattr(self, kind) is not None)

    @property
    def target(self) -> DeployTarget:
        target: DeployTarget = getattr(self, self.kind)
        return target


# ---- verification --------------------------------------------------------------------------


class HttpCheck(_Model):
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
            raise _invalid("needs json_field (which field to compare)", "json_equals")
        return self


class PrometheusCheck(_Model):
    """Run an instant query; pass while the value stays within max/min."""

    url: Url
    query: Text
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.max is None and self.min is None:
            raise _invalid("set max, min or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise _invalid(f"must not be greater than max ({self.max})", "min")
        return self


class VerifyCheck(_Model):
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
            raise _problems_error(problems)
        return self


# ---- environments and services -------------------------------------------------------------


class Environment(_Model):
    """One place a service runs: how deploys are tracked, gated, started and verified."""

    name: Name
    track: Track | None = None
    auto_promote_to: Name | None = None
    gate: Gate | None = None
    deploy: Deploy | None = None
    verify: list[VerifyCheck] = []
    on_verification_failure: Literal["rollback", "notify"] = "notify"

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if self.name == "all":
            problems.append((("name",), "'all' is reserved (it means every environment)"))
        if self.on_verification_failure == "rollback" and self.deploy is None:
            problems.append(
                (
                    ("on_verification_failure",),
                    "rollback needs a deploy section to roll back through",
                )
            )
        seen: set[str] = set()
        for index, check in enumerate(self.verify):
            if check.name in seen:
                problems.append((("verify", index, "name"), f"'{check.name}' is used twice"))
            seen.add(check.name)
        if problems:
            raise _problems_error(problems)
        return self


_GITHUB_REPO = re.compile(r"github:([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)")
_GITLAB_REPO = re.compile(r"gitlab:([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)")


def _check_repo(value: str) -> str:
    if not (_GITHUB_REPO.fullmatch(value) or _GITLAB_REPO.fullmatch(value)):
        raise _invalid(f"'{value}' must look like 'github:owner/name' or 'gitlab:group/sub/name'")
    return value


Repo = Annotated[
    str,
    AfterValidator(_check_repo),
    WithJsonSchema({"type": "string", "pattern": r"^(github|gitlab):[^/\s]+(/[^/\s]+)+$"}),
]


class Service(_Model):
    """A deployable thing, its repository and its environments in promotion order."""

    repo: Repo
    channel: SlackChannel | None = None
    owners: list[SlackPrincipal] = []
    oncall: Oncall | None = None
    environments: Annotated[list[Environment], Field(min_length=1)]

    @property
    def provider(self) -> Literal["github", "gitlab"]:
        return "gitlab" if self.repo.startswith("gitlab:") else "github"

    @property
    def repo_path(self) -> str:
        return self.repo.partition(":")[2]

    def environment(self, name: str) -> Environment | None:
        return next((env for env in self.environments if env.name == name), None)

    @model_validator(mode="after")
    def _check_environments(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        names = [env.name for env in self.environments]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append((("environments", index, "name"), f"'{name}' is used twice"))
        for index, env in enumerate(self.environments):
            target = env.auto_promote_to
            at: Loc = ("environments", index, "auto_promote_to")
            if target == env.name:
                problems.append((at, "must name another environment, not itself"))
            elif target is not None and target not in names:
                problems.append(
                    (
                        at,
                        f"'{target}' is not an environment of this service"
                        f"{_suggest(target, names)} (it has {_and(names)})",
                    )
                )
        loop = _promotion_loop(self.environments)
        if loop:
            index = names.index(loop[0])
            problems.append(
                (
                    ("environments", index, "auto_promote_to"),
                    f"promotions go round in a loop: {' -> '.join(loop)}",
                )
            )
        if problems:
            raise _problems_error(problems)
        return self


def _promotion_loop(environments: Sequence[Environment]) -> list[str]:
    """The first auto_promote_to cycle longer than one step, as names, or []."""
    follows = {env.name: env.auto_promote_to for env in environments}
    for start in follows:
        path = [start]
        nxt = follows.get(start)
        while nxt is not None and nxt in follows and nxt not in path:
            path.append(nxt)
            nxt = follows.get(nxt)
        if nxt == start and len(path) > 1:
            return [*path, start]
    return []


class Config(_Model):
    """The whole `releasebot.yaml`."""

    model_config = ConfigDict(title="releasebot.yaml")

    slack: SlackConfig
    identities: dict[SlackUserId, Identity] = {}
    risk: RiskConfig = Field(default_factory=RiskConfig)
    freezes: list[Freeze] = []
    break_glass: BreakGlass | None = None
    services: dict[Name, Service]

    # ---- lookups ----

    def iter_environments(self) -> Iterator[tuple[str, Service, Environment]]:
        for name, service in self.services.items():
            for env in service.environments:
                yield name, service, env

    def services_for_repo(self, provider: str, repo_path: str) -> list[tuple[str, Service]]:
        """Every service built from this repository (case-insensitive), in file order."""
        provider, path = provider.lower(), repo_path.strip("/").casefold()
        return [
            (name, service)
            for name, service in self.services.items()
            if service.provider == provider and service.repo_path.casefold() == path
        ]

    def service_for_repo(self, provider: str, repo_path: str) -> tuple[str, Service] | None:
        """The first service built from this repository (case-insensitive), or None."""
        found = self.services_for_repo(provider, repo_path)
        return found[0] if found else None

    def service_for_argocd_app(self, app: str) -> tuple[str, Service, Environment] | None:
        """The environment tracking this Argo CD app, else the one deploying through it."""
        for name, service, env in self.iter_environments():
            if env.track is not None and env.track.argocd_app == app:
                return name, service, env
        for name, service, env in self.iter_environments():
            if env.deploy is not None and env.deploy.argocd is not None:
                if env.deploy.argocd.app == app:
                    return name, service, env
        return None

    def channel_for(self, service_name: str) -> str:
        """The service's channel, else `slack.default_channel` (also for unknown services)."""
        service = self.services.get(service_name)
        if service is not None and service.channel is not None:
            return service.channel
        return self.slack.default_channel

    # ---- checks across services ----

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        problems = [*self._freeze_problems(), *self._routing_problems()]
        if problems:
            raise _problems_error(problems)
        return self

    def _freeze_problems(self) -> Iterator[tuple[Loc, str]]:
        known = sorted({env.name for _, _, env in self.iter_environments()})
        for index, freeze in enumerate(self.freezes):
            for position, name in enumerate(freeze.environments):
                if name != "all" and name not in known:
                    yield (
                        ("freezes", index, "environments", position),
                        f"no service has an environment '{name}'{_suggest(name, known)}"
                        f" (use 'all', {_and(known, 'or')})",
                    )

    def _routing_problems(self) -> Iterator[tuple[Loc, str]]:
        """Two environments an incoming deploy event could not tell apart."""
        owners: dict[tuple[str, ...], str] = {}
        for name, service in self.services.items():
            for index, env in enumerate(service.environments):
                if env.track is None:
                    continue
                for key in _TRACK_KEYS:
                    value = getattr(env.track, key)
                    if value is None:
                        continue
                    # Argo CD apps and Jenkins jobs are global names; the rest live in a repo.
                    scope = "" if key in ("argocd_app", "jenkins_job") else service.repo.casefold()
                    identity = (key, scope, value.casefold())
                    if identity in owners:
                        yield (
                            ("services", name, "environments", index, "track", key),
                            f"'{value}' is already tracked by {owners[identity]}; "
                            "deploy events could not tell the two apart",
                        )
                    else:
                        owners[identity] = f"services.{name}.environments[{index}]"


def _and(items: Sequence[str], conjunction: str = "and") -> str:
    """`['a', 'b', 'c']` -> `'a', 'b' and 'c'`."""
    quoted = [f"'{item}'" for item in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def parse_config(data: object) -> Config:
    """Validate already-parsed YAML; raise ConfigError listing every problem with its path."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError([f"{path}: cannot read the file ({reason})"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as error:
        raise ConfigError([f"{path}: {_describe_yaml_error(error)}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: invalid YAML: {error}"]) from None
    if data is None:
        raise ConfigError([f"{path}: the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{path}: the top level must be a mapping (slack:, services:, ...), "
                f"not {_yaml_kind(data)}"
            ]
        )
    return parse_config(data)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of `releasebot.yaml`, for editors and `releasebot config schema`."""
    schema = Config.model_json_schema(schema_generator=_SchemaGenerator)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


class _SchemaGenerator(GenerateJsonSchema):
    """Writes defaults the way a user would write them in the YAML ("4h", "09:00")."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        if isinstance(dft, time):
            return f"{dft:%H:%M}"
        return super().encode_default(dft)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key '{key}' twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"invalid YAML{where}: {error.problem or error.context or 'cannot parse it'}"


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


# --------------------------------------------------------------------------------------------
# Turning pydantic errors into "<yaml path>: <message>"
# --------------------------------------------------------------------------------------------

# Parts pydantic adds to a loc that are not keys of the YAML document.
_INTERNAL_LOC = re.compile(
    r"^(\[key\]|(function-(before|after|wrap|plain)|tagged-union|chain|nullable|lax-or-strict"
    r"|json-or-python|union|definition-ref|model|default)\[.*\]|`.*`)$"
)

_EXPECTED_KIND = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "datetime_type": 'a date and time like "2026-12-23T00:00:00+01:00"',
    "datetime_parsing": 'a date and time like "2026-12-23T00:00:00+01:00"',
    "datetime_from_date_parsing": 'a date and time like "2026-12-23T00:00:00+01:00"',
}


def _problems(error: ValidationError) -> list[str]:
    rendered = [f"{_render_path(loc)}: {message}" for loc, message in _located(error, Config)]
    return list(dict.fromkeys(rendered))


def _located(error: ValidationError, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    """Each problem of a ValidationError as (path from `root`, plain-English message)."""
    problems: list[tuple[Loc, str]] = []
    for detail in error.errors(include_url=False):
        raw: Loc = tuple(detail["loc"])
        loc = tuple(part for part in raw if not _is_internal(part))
        ctx = detail.get("ctx") or {}
        if detail["type"] == _PROBLEM:
            problems.extend((loc + tuple(sub), message) for sub, message in ctx["problems"])
        else:
            message = _message(detail, loc, root, is_key="[key]" in raw)
            problems.append((loc, message))
    return problems


def _is_internal(part: str | int) -> bool:
    return isinstance(part, str) and bool(_INTERNAL_LOC.match(part))


def _message(detail: ErrorDetails, loc: Loc, root: type[BaseModel], *, is_key: bool) -> str:
    kind, msg, value = detail["type"], detail["msg"], detail["input"]
    ctx = detail.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        return f"unknown key '{key}'{_suggest(key, _known_keys(root, loc[:-1]))}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _suggest(value, options) if isinstance(value, str) else ""
        if is_key:
            return f"unknown key '{value}'{hint}: use {ctx.get('expected')}"
        return f"must be {ctx.get('expected')}{hint}"
    if kind in _EXPECTED_KIND:
        text = f"must be {_EXPECTED_KIND[kind]}"
        if value is None:
            return f"has no value; it {text}"
        if kind == "string_type" and isinstance(value, bool | int | float):
            return f"{text}; put {json.dumps(value)} in quotes"
        return text
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        limit = ctx.get(key)
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {sign} {limit}"
    if kind in ("too_short", "string_too_short"):
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"needs at least {minimum} entries"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _known_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model at this path accepts (for "did you mean")."""
    node: object = root
    for part in loc:
        node = _step(_unwrap(node), part)
        if node is None:
            return []
    model = _unwrap(node)
    if isinstance(model, type) and issubclass(model, _Model):
        return [*model.model_fields, *model._input_keys]
    return []


def _step(node: object, part: str | int) -> object | None:
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    origin, args = get_origin(node), get_args(node)
    inner: object = None
    if origin is list and isinstance(part, int) and args:
        inner = args[0]
    elif origin is dict and len(args) == 2:
        inner = args[1]
    return inner


def _unwrap(node: object) -> object:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = get_origin(node)
        if origin is Annotated:
            node = get_args(node)[0]
        elif origin is Union or origin is UnionType:
            members = [arg for arg in get_args(node) if arg is not type(None)]
            if len(members) != 1:
                return node
            node = members[0]
        else:
            return node


def _render_path(loc: Loc) -> str:
    """`("services", "x", "environments", 1, "gate")` -> `services.x.environments[1].gate`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"
