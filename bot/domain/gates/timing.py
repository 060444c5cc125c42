"""When a gate is frozen, reminds, expires or is superseded by a newer release."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.config import GatePolicy, ScheduledFreeze
from bot.domain.gates.common import fold, require_aware

DueAction = Literal["none", "remind", "expire"]


def active_freeze(
    freezes: Iterable[ScheduledFreeze], environment: str, at: datetime
) -> ScheduledFreeze | None:
    """The first freeze (file order) covering the environment at this moment, or None.

    Check it when the decision is taken or the deploy would start, not when the pipeline did.
    """
    require_aware(at, "at")
    return next((f for f in freezes if f.covers(environment) and f.active_at(at)), None)


@dataclass(frozen=True)
class GateTimes:
    """When a gate opened and how long it waits: reminded at `remind_at`, expired at
    `expires_at` (from that moment on; the gate is open during [created_at, expires_at))."""

    created_at: datetime
    expires_after: timedelta
    remind_after: timedelta | None = None

    @classmethod
    def from_gate(cls, gate: GatePolicy, created_at: datetime) -> GateTimes:
        return cls(
            created_at=created_at,
            expires_after=gate.expires_after,
            remind_after=gate.remind_after,
        )

    @property
    def expires_at(self) -> datetime:
        return self.created_at + self.expires_after

    @property
    def remind_at(self) -> datetime | None:
        return None if self.remind_after is None else self.created_at + self.remind_after


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
