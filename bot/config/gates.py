"""What a release must get past: manual gates, scheduled freezes and the break-glass path.

A gate's `require` rules are each met by distinct people; `approvals: N` with
`approvers: [...]` is shorthand for one rule. A risk level can pass a gate, block it or demand
other rules. Freezes written in the YAML hold deploys into their environments for a window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from bot.config.base import ConfigModel, invalid, problems_error, quoted_list
from bot.config.messages import located
from bot.config.risk import RiskLevelName
from bot.config.types import (
    Name,
    OffsetDatetime,
    PositiveDuration,
    SlackPrincipal,
    Text,
    format_duration,
)


class QuorumRule(ConfigModel):
    """`count` distinct people from `approvers` (Slack users or user groups) must approve."""

    approvers: Annotated[list[SlackPrincipal], Field(min_length=1)]
    count: Annotated[int, Field(ge=1, strict=True)]

    @model_validator(mode="after")
    def _check_reachable(self) -> Self:
        people = set(self.approvers)
        if all(not p.startswith("S") for p in people) and self.count > len(people):
            raise invalid(
                f"needs {self.count} approvals but approvers lists only {len(people)} "
                "people and no user group",
                "count",
            )
        return self


Rules = Annotated[list[QuorumRule], Field(min_length=1)]


class RiskGate(ConfigModel):
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
            raise invalid(
                f"set only one of auto_approve, blocked or require (found {quoted_list(chosen)})"
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


def _blocked_shorthand(value: object) -> object:
    """`exhausted: blocked` is shorthand for `exhausted: {blocked: true}`."""
    return {"blocked": True} if value == "blocked" else value


class BudgetGate(ConfigModel):
    """How a low error budget changes the gate: block it, or demand other rules."""

    blocked: bool = False
    require: Rules | None = None

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if self.blocked == (self.require is not None):
            raise invalid("set blocked or require (one of them)")
        return self


BudgetRule = Annotated[BudgetGate, BeforeValidator(_blocked_shorthand)]

BUDGET_BANDS = ("exhausted", "below_10_percent", "below_25_percent", "below_50_percent")


class ErrorBudgetGate(ConfigModel):
    """`by_error_budget`: stricter gates while the service's error budget (its `slo:`) is
    low. The tightest band the budget is in applies: `exhausted` (none left), then
    `below_10_percent`, `below_25_percent`, `below_50_percent`. When Prometheus cannot be
    asked the budget is unknown: `unknown: require` (the default) applies the strictest rule
    set here, `allow` lets the gate be as if the budget were fine."""

    exhausted: BudgetRule | None = None
    below_10_percent: BudgetRule | None = None
    below_25_percent: BudgetRule | None = None
    below_50_percent: BudgetRule | None = None
    unknown: Literal["require", "allow"] = "require"

    @model_validator(mode="after")
    def _check_any(self) -> Self:
        if not self.bands():
            raise invalid(f"set at least one of {', '.join(BUDGET_BANDS)}")
        return self

    def bands(self) -> dict[str, BudgetGate]:
        """The bands set here, tightest first."""
        return {b: rule for b in BUDGET_BANDS if (rule := getattr(self, b)) is not None}


UnknownPeople = Literal["refuse", "allow"]


def check_timing(waits: Any) -> None:
    """The reminder and escalation keys of a gate, or of a flag release's steps, come
    before its expiry, and `escalate_to` only with `escalate_after` (raised naming the key)."""
    for key in ("remind_after", "remind_every", "escalate_after"):
        value = getattr(waits, key)
        if value is not None and value >= waits.expires_after:
            raise invalid(
                f"must be shorter than expires_after ({format_duration(waits.expires_after)})",
                key,
            )
    if waits.escalate_to is not None and waits.escalate_after is None:
        raise invalid("is used only with escalate_after (when to escalate)", "escalate_to")


class GatePolicy(ConfigModel):
    """A manual gate: every `require` rule must be met by distinct people.

    `approvals: N` with `approvers: [...]` is shorthand for one rule `{approvers, count: N}`.
    Approvers are reminded once at `remind_after`, and again every `remind_every` when it is
    set (from `remind_after`, or from `remind_every` itself without it) until the gate
    expires. At `escalate_after` the release message's thread mentions `escalate_to` (by
    default the on-call of `slack.oncall`) and every approver who has not voted gets a
    direct message.

    When the people behind a release cannot be determined (the code host could not list
    its commits or pull requests, or no commit list exists), approvals are refused while
    `forbid_self_approval` is on; `unknown_people: allow` lets them through, recorded as
    taken blind.
    """

    # The JSON Schema keeps calling it `Gate`, the name editors and published schemas know.
    model_config = ConfigDict(title="Gate", json_schema_extra=_gate_json_schema)
    _input_keys: ClassVar[tuple[str, ...]] = ("approvals", "approvers")

    require: Rules
    forbid_self_approval: bool = True
    unknown_people: UnknownPeople = Field(
        "refuse",
        description=(
            "When the people behind a release cannot be determined: `refuse` approvals "
            "(the default), or `allow` them, recorded as taken blind."
        ),
    )
    expires_after: PositiveDuration = timedelta(hours=4)
    remind_after: PositiveDuration | None = None
    remind_every: PositiveDuration | None = None
    escalate_after: PositiveDuration | None = None
    escalate_to: Annotated[list[SlackPrincipal], Field(min_length=1)] | None = None
    by_risk: dict[RiskLevelName, RiskGate] = {}
    by_error_budget: ErrorBudgetGate | None = None  # needs the service's slo:

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        has_require, has_count = "require" in data, "approvals" in data
        if has_require and has_count:
            raise invalid("use either require or approvals + approvers, not both", "approvals")
        if has_require and "approvers" in data:
            raise invalid(
                "list approvers inside each require rule (or use approvals + approvers "
                "without require)",
                "approvers",
            )
        if not has_count:
            if "approvers" in data:
                raise invalid("is required with approvers (how many must approve)", "approvals")
            if not has_require:
                raise invalid("needs require (a list of rules) or approvals + approvers")
            return data
        if "approvers" not in data:
            raise invalid("is required with approvals (who may approve)", "approvers")
        try:
            rule = QuorumRule.model_validate(
                {"approvers": data["approvers"], "count": data["approvals"]}
            )
        except ValidationError as error:
            # Report on the keys the user wrote: `count` is their `approvals`.
            raise problems_error(
                [
                    (("approvals", *loc[1:]) if loc[:1] == ("count",) else loc, message)
                    for loc, message in located(error, QuorumRule)
                ]
            ) from None
        rest = {k: v for k, v in data.items() if k not in ("approvals", "approvers")}
        return {**rest, "require": [rule]}

    @model_validator(mode="after")
    def _check_reminder(self) -> Self:
        check_timing(self)
        return self


RollbackRule = Literal["allowed", "blocked"]


class ScheduledFreeze(ConfigModel):
    """A change freeze: deploys into these environments wait (or need break-glass).

    Rollbacks stay allowed during the freeze unless `rollbacks: blocked`. With
    `production_only: true` the freeze covers production environments only, as each
    service's `production` property says, whatever they are named: alone, every service's
    production environment; with `environments`, those of them that are production.
    """

    # A freeze window written in the YAML; the JSON Schema keeps calling it `Freeze`.
    model_config = ConfigDict(title="Freeze")

    environments: list[Name] = []
    start: OffsetDatetime
    end: OffsetDatetime
    reason: Text
    rollbacks: RollbackRule = Field(
        "allowed",
        description="`blocked`: rollbacks wait for the freeze too (or need break-glass).",
    )
    production_only: bool = Field(
        False,
        description="`true`: only production environments (each environment's `production` "
        "property, by default the last of a service's path), whatever their names.",
    )

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if not self.environments and not self.production_only:
            raise invalid(
                "needs at least one environment (or 'all'), or production_only: true for "
                "every service's production environment",
                "environments",
            )
        if self.end <= self.start:
            raise invalid(f"must be after start ({self.start.isoformat()})", "end")
        return self

    def covers(self, environment: str, production: bool | None = None) -> bool:
        """Whether the freeze holds `environment`. `production` says whether it is a
        production environment of the service changed (None: by the name `production`,
        for a caller that knows no service)."""
        if self.production_only:
            is_production = environment == "production" if production is None else production
            if not is_production:
                return False
            if not self.environments:
                return True
        return "all" in self.environments or environment in self.environments

    def active_at(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


class BreakGlass(ConfigModel):
    """The emergency path through a gate or a freeze."""

    approvers: Annotated[list[SlackPrincipal], Field(min_length=1)]
    second_person: bool = True
    valid_for: PositiveDuration
