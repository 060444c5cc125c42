"""The `release:` block of a service: feature flags released behind their own gate.

Deploying puts code in production dark; releasing is turning a feature flag on for users.
A service's `release:` names the flags (on LaunchDarkly, Unleash, or anything behind a
signed webhook), the percentages each one goes through (`steps`) and who must approve each
step (`require`, the same quorum rules as an environment's gate):

    release:
      environment: production            # whose verified deploys offer the flags
      require:
        - { approvers: ["S0RELMGRS"], count: 1 }
      forbid_self_approval: true
      expires_after: 4h                  # a step nobody decided in time expires (default 4h)
      remind_after: 1h                   # remind the approvers (then every remind_every)
      escalate_after: 2h                 # mention escalate_to (default: on-call), DM who
      escalate_to: ["S0ONCALL1"]         # has not voted, once per step
      flags:
        - key: new-checkout-flow
          launchdarkly: { project: "acme-web", environment: "production" }
          steps: [10, 50, 100]
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, model_validator

from bot.config.base import ConfigModel, Loc, invalid, problems_error
from bot.config.gates import GatePolicy, Rules, UnknownPeople, check_timing
from bot.config.types import (
    EnvVarName,
    Name,
    PositiveDuration,
    SlackPrincipal,
    Text,
    Url,
)

Percent = Annotated[int, Field(ge=1, le=100, strict=True)]


class LaunchDarklyFlag(ConfigModel):
    """A LaunchDarkly flag: its project and environment keys; the API access token is read
    from `api_key_env` (a token with the Writer role, or a custom role that may update the
    flag's targeting)."""

    project: Text
    environment: Text
    api_key_env: EnvVarName = "LAUNCHDARKLY_API_KEY"
    url: Url = "https://app.launchdarkly.com"


class UnleashFlag(ConfigModel):
    """An Unleash feature toggle: the server's URL, project and environment; an admin (or
    personal access) token is read from `token_env`."""

    url: Url
    project: Text = "default"
    environment: Text
    token_env: EnvVarName = "UNLEASH_ADMIN_TOKEN"


class WebhookFlag(ConfigModel):
    """Any other flag system: a signed JSON body POSTed to a URL of yours."""

    url: Url
    secret_env: EnvVarName


PROVIDERS = ("launchdarkly", "unleash", "webhook")


class Flag(ConfigModel):
    """One flag and the percentages it is released through, in order (the last step is
    where it stays). With `auto: true` each step after the first is taken by releasebot as
    soon as the checks after the one before it passed."""

    key: Text
    launchdarkly: LaunchDarklyFlag | None = None
    unleash: UnleashFlag | None = None
    webhook: WebhookFlag | None = None
    steps: Annotated[list[Percent], Field(min_length=1)] = [100]
    auto: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        chosen = [name for name in PROVIDERS if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = f" (found {', '.join(chosen)})" if chosen else ""
            raise invalid(f"set exactly one of launchdarkly, unleash or webhook{found}")
        for index in range(1, len(self.steps)):
            if self.steps[index] <= self.steps[index - 1]:
                raise invalid(
                    f"steps must go up: {self.steps[index]}% comes after {self.steps[index - 1]}%",
                    "steps",
                    index,
                )
        return self

    @property
    def provider(self) -> str:
        """launchdarkly, unleash or webhook."""
        return next(name for name in PROVIDERS if getattr(self, name) is not None)


class ReleaseFlags(ConfigModel):
    """Feature flags released after a deploy verifies, each step behind a gate of its own.

    A step waiting for approvals expires `expires_after` after it opened (as a deploy gate
    does, default 4h); its approvers are reminded in the thread once at `remind_after`, and
    again every `remind_every` when it is set, until it expires. At `escalate_after` the
    thread mentions `escalate_to` (by default whoever is on call for the service, else
    `slack.oncall`) and each approver who has not voted gets a direct message, once per
    step."""

    environment: Name | None = None
    require: Rules
    forbid_self_approval: bool = True
    unknown_people: UnknownPeople = "refuse"
    expires_after: PositiveDuration = timedelta(hours=4)
    remind_after: PositiveDuration | None = None
    remind_every: PositiveDuration | None = None
    escalate_after: PositiveDuration | None = None
    escalate_to: Annotated[list[SlackPrincipal], Field(min_length=1)] | None = None
    flags: Annotated[list[Flag], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_reminder(self) -> Self:
        check_timing(self)
        return self

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for index, flag in enumerate(self.flags):
            if flag.key in seen:
                problems.append((("flags", index, "key"), f"'{flag.key}' is listed twice"))
            seen.add(flag.key)
        if problems:
            raise problems_error(problems)
        return self

    def flag(self, key: str) -> Flag | None:
        return next((flag for flag in self.flags if flag.key == key), None)

    def policy(self) -> GatePolicy:
        """The release's approval rules as a gate policy, so a flag step is decided by
        exactly the rules a deploy gate is (quorum, self-approval ban, unknown people)."""
        return GatePolicy(
            require=list(self.require),
            forbid_self_approval=self.forbid_self_approval,
            unknown_people=self.unknown_people,
            expires_after=self.expires_after,
            remind_after=self.remind_after,
            remind_every=self.remind_every,
            escalate_after=self.escalate_after,
            escalate_to=self.escalate_to,
        )
