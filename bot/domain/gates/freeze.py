"""Freezes that hold: whether a change into an environment waits for a freeze, and what
would let it through.

Every path a change reaches releasebot by asks the same question, `freeze_hold(...)`: a
gate request from CI, a pipeline's protection rule, a promotion (by hand or automatic), an
approval click and a rollback. A forward change is held by every freeze covering its
environment; a rollback only by a freeze that says `rollbacks: blocked`. A confirmed
break-glass opens a window for its service in its environment: until the window closes the
freeze lets that service's changes through, after it the freeze holds again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from bot.config import ScheduledFreeze
from bot.domain.gates.common import require_aware

Change = Literal["forward", "rollback"]
FORWARD: Final = "forward"
ROLLBACK: Final = "rollback"


def moment(value: datetime) -> str:
    """`2026-12-24 09:00 UTC`: a moment as every freeze answer shows it."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class FreezeHold:
    """A change into `environment` waits: frozen for `reason` until `until`.

    `window_closed_at` is when the last break-glass window on it closed, if one did.
    """

    environment: str
    reason: str
    until: datetime
    change: Change = FORWARD
    window_closed_at: datetime | None = None

    def describe(self) -> str:
        """`production is frozen until 2027-01-03 23:00 UTC: Year-end change freeze`."""
        text = f"{self.environment} is frozen until {moment(self.until)}: {self.reason}"
        if self.window_closed_at is not None:
            text += f"; the break-glass window closed at {moment(self.window_closed_at)}"
        return text

    def refusal(self) -> str:
        """The answer to a change refused by the freeze, with what would make it succeed."""
        what = "roll back" if self.change == ROLLBACK else "ask again"
        return (
            f"{self.describe()}; {what} after the freeze ends, or break glass on the "
            "release message to pass it now"
        )

    def held(self) -> str:
        """The progress line of a change held by the freeze, with what lets it through."""
        return f"{self.describe()}; it goes ahead when the freeze ends, or now through break-glass"


def freeze_hold(
    freezes: Iterable[ScheduledFreeze],
    environment: str,
    at: datetime,
    *,
    change: Change = FORWARD,
    window_until: datetime | None = None,
    production: bool | None = None,
) -> FreezeHold | None:
    """Why a change into `environment` at `at` waits for a freeze, or None when it may go.

    The first covering freeze (file order) gives the reason; the change waits until the last
    of them ends. A rollback only waits for freezes with `rollbacks: blocked`. An open
    break-glass window (`at` before `window_until`) lets the change through. `production`
    says whether the environment is production for the service changed: a freeze with
    `production_only` covers it only then (None: when it is named `production`).
    """
    require_aware(at, "at")
    covering = [
        f
        for f in freezes
        if f.covers(environment, production)
        and f.active_at(at)
        and (change == FORWARD or f.rollbacks == "blocked")
    ]
    if not covering:
        return None
    if window_until is not None and at < window_until:
        return None
    return FreezeHold(
        environment=environment,
        reason=covering[0].reason,
        until=max(f.end for f in covering),
        change=change,
        window_closed_at=window_until,
    )


def break_glass_until(record: Mapping[str, Any] | None) -> datetime | None:
    """When the window of a confirmed break-glass closes; None when it was never confirmed."""
    if not record or not record.get("confirmed_by") or not record.get("valid_until"):
        return None
    until = datetime.fromisoformat(str(record["valid_until"]))
    require_aware(until, "valid_until")
    return until


def break_glass_window(records: Iterable[Mapping[str, Any] | None]) -> datetime | None:
    """The latest close of the confirmed break-glass windows among `records`, or None."""
    ends = [end for end in (break_glass_until(r) for r in records) if end is not None]
    return max(ends, default=None)
