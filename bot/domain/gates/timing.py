"""When a gate is frozen, reminds, escalates, expires or is superseded by a newer release, and
whether an expired one can be asked for again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from bot.config import GatePolicy, ScheduledFreeze
from bot.domain.gates.common import fold, require_aware

DueAction = Literal["none", "remind", "expire"]


def active_freeze(
    freezes: Iterable[ScheduledFreeze],
    environment: str,
    at: datetime,
    *,
    production: bool | None = None,
) -> ScheduledFreeze | None:
    """The first freeze (file order) covering the environment at this moment, or None.

    `production`: whether the environment is production for the service changed (a freeze
    with `production_only` covers only those). Check it when the decision is taken or the
    deploy would start, not when the pipeline did.
    """
    require_aware(at, "at")
    return next((f for f in freezes if f.covers(environment, production) and f.active_at(at)), None)


@dataclass(frozen=True)
class GateTimes:
    """When a gate opened and how long it waits: first reminded at `remind_at` (then every
    `remind_every`, when set), escalated at `escalate_at`, expired at `expires_at` (from that
    moment on; the gate is open during [created_at, expires_at))."""

    created_at: datetime
    expires_after: timedelta
    remind_after: timedelta | None = None
    remind_every: timedelta | None = None
    escalate_after: timedelta | None = None

    @classmethod
    def from_gate(cls, gate: GatePolicy, created_at: datetime) -> GateTimes:
        return cls(
            created_at=created_at,
            expires_after=gate.expires_after,
            remind_after=gate.remind_after,
            remind_every=gate.remind_every,
            escalate_after=gate.escalate_after,
        )

    @property
    def expires_at(self) -> datetime:
        return self.created_at + self.expires_after

    @property
    def remind_at(self) -> datetime | None:
        first = self.remind_after or self.remind_every
        return None if first is None else self.created_at + first

    @property
    def escalate_at(self) -> datetime | None:
        return None if self.escalate_after is None else self.created_at + self.escalate_after


def reminder_due(remind_at: datetime | None, reminded_at: datetime | None, now: datetime) -> bool:
    """A reminder is due from `remind_at` on, unless one already went out at or after it."""
    require_aware(now, "now")
    if remind_at is None or now < remind_at:
        return False
    return reminded_at is None or reminded_at < remind_at


def next_reminder(
    remind_at: datetime, every: timedelta | None, now: datetime, expires_at: datetime
) -> datetime | None:
    """When to remind again after the reminder due at `remind_at` went out at `now`.

    The next step of `every` after `now` (steps a late sweep missed are not made up), or None
    when reminders do not repeat or the next one would fall at or after expiry.
    """
    require_aware(now, "now")
    if every is None:
        return None
    missed = max((now - remind_at) // every, 0)
    following = remind_at + every * (missed + 1)
    return following if following < expires_at else None


def due_action(times: GateTimes, now: datetime, reminded: bool) -> DueAction:
    """What a pending gate needs at `now`: "expire" from `expires_at` on, "remind" from
    `remind_at` on until expiry unless already reminded, else "none"."""
    require_aware(now, "now")
    if now >= times.expires_at:
        return "expire"
    remind_at = times.remind_at
    if remind_at is not None and now >= remind_at and not reminded:
        return "remind"
    return "none"


@dataclass(frozen=True)
class GateBinding:
    """A gate is bound to one version of one service in one environment."""

    service: str
    environment: str
    sha: str


def supersedes(incoming: GateBinding, pending: GateBinding) -> bool:
    """A release of another sha into the same service and environment supersedes the pending
    gate; its approvals never carry over (they belong to the old gate)."""
    return (
        incoming.service == pending.service
        and incoming.environment == pending.environment
        and fold(incoming.sha) != fold(pending.sha)
    )


STARTS_ITS_OWN_DEPLOY: Final = frozenset(
    {"github_workflow", "gitlab_trigger", "argocd", "jenkins", "webhook"}
)
"""Deployers releasebot starts a deploy through, rather than answering a pipeline that waits."""

_WAITING_PIPELINE_TOLD: Final = {
    "github_protection_rule": (
        "GitHub was told the deployment was rejected when this gate expired, and that run "
        "cannot be asked again",
        "re-run its deployment job to open a new gate",
    ),
    "gitlab_deployment_approval": (
        "GitLab was told the deployment was rejected when this gate expired",
        "run the deployment job again in GitLab to open a new gate",
    ),
}

_GITLAB_PROMOTION_TOLD: Final = (
    "GitLab was told to reject the deployment of this commit waiting for approval when this "
    "gate expired, if one was waiting (the release thread says what was sent, or that nothing "
    "was waiting in GitLab)",
    "run the deployment job again in GitLab and promote again",
)


def rerequest_refusal(decide_via: str | None, context: Mapping[str, Any]) -> str | None:
    """Why an expired gate cannot be asked for again from Slack, and what to do instead
    (`cannot_ask_again` as one line), or None when it can."""
    cannot = cannot_ask_again(decide_via, context)
    return None if cannot is None else f"{cannot[0]}: {cannot[1]}"


def cannot_ask_again(decide_via: str | None, context: Mapping[str, Any]) -> tuple[str, str] | None:
    """(why an expired gate cannot be asked for again from Slack, what to do instead), or None
    when it can.

    It can when approving it makes releasebot start the deploy itself (a promotion through a
    deployer in `STARTS_ITS_OWN_DEPLOY`): nothing was sent to a pipeline when it expired. A
    pipeline that waited (a GitHub protection rule, a GitLab deployment approval) was told
    "rejected" and is over; a CI job that polled the gates API saw "expired" and stopped. A
    promotion into a GitLab-approved environment rejected GitLab's deployment of its commit
    if one was waiting, and said in the thread what it sent.
    """
    if decide_via is None:
        return (
            "the CI job asked through the gates API and stopped waiting when this gate expired",
            "run the job again to ask for a new gate",
        )
    if decide_via in STARTS_ITS_OWN_DEPLOY and context.get("on_approve"):
        return None
    if decide_via == "gitlab_deployment_approval" and context.get("on_approve"):
        return _GITLAB_PROMOTION_TOLD
    return _WAITING_PIPELINE_TOLD.get(
        decide_via,
        (
            f"the pipeline ({decide_via}) was told this gate expired",
            "run it again to open a new gate",
        ),
    )
