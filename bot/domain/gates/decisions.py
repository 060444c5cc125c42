"""A gate's statuses, and the one answer given before a decision on it is recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final, Literal

from bot.config import ScheduledFreeze
from bot.domain.gates.common import Mention, plain, require_aware
from bot.domain.gates.freeze import freeze_hold, moment
from bot.domain.gates.people import (
    Person,
    ReleasePeople,
    self_approval_conflict,
    unknown_people_refusal,
)
from bot.domain.gates.quorum import can_fill_a_seat
from bot.domain.gates.requirement import Requirement
from bot.domain.wording import join

Decision = Literal["approve", "reject"]

# A gate's own status. A deployment waiting on its gate (`awaiting_approval`) also counts as
# pending, so a caller may pass either.
PENDING: Final = "pending"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
SUPERSEDED: Final = "superseded"
GATE_STATUSES: Final = (PENDING, APPROVED, REJECTED, EXPIRED, SUPERSEDED)
_PENDING_ALIASES: Final = frozenset({PENDING, "awaiting_approval"})
_CLOSED_REASONS: Final = {
    APPROVED: "this gate was already approved",
    REJECTED: "this gate was already rejected",
    EXPIRED: "this gate already expired; ask for a new approval",
    SUPERSEDED: "this gate was superseded by a newer release",
}


def decision_refusal(
    *,
    decision: Decision,
    gate_status: str,
    requirement: Requirement,
    forbid_self_approval: bool,
    person: Person,
    people: ReleasePeople,
    approvals: Sequence[str],
    memberships: Mapping[str, frozenset[str]],
    environment: str,
    freezes: Iterable[ScheduledFreeze],
    at: datetime,
    break_glass_active: bool = False,
    break_glass_until: datetime | None = None,
    mention: Mention = plain,
    allow_unknown_people: bool = False,
) -> str | None:
    """Why this person may not record this decision on the gate now, or None.

    Checked in order, the first that applies answers:
    1. the gate is no longer pending ("this gate was already approved");
    2. the person belongs to no rule ("you are not in S0RELMGRS or S0SREGRPS");
    3. approvals only, with `forbid_self_approval`: "you authored 2 of the commits"; and
       while the people behind the release are unknown (`people.unknown`), unless
       `allow_unknown_people`: "the people behind this change are unknown: ...";
    4. they already approved (`approvals`: user ids): "you already approved this release";
    5. approvals only, a freeze covers `environment` at `at` (unless a confirmed break-glass
       is active, or its window, `break_glass_until`, is still open): "production is frozen:
       Year-end change freeze; use break-glass", naming when a closed window closed;
    6. approvals only, a blocked gate: "critical risk: only break-glass can pass this gate".

    Rejecting is allowed to any approver who has not voted yet, during a freeze, on a blocked
    gate and on their own change (stopping a release is always safe).
    """
    require_aware(at, "at")
    closed = closed_refusal(gate_status)
    if closed is not None:
        return closed
    if not can_fill_a_seat(requirement, person.user_id, memberships):
        return _not_an_approver(requirement, mention)
    approving = decision == "approve"
    if approving and forbid_self_approval:
        conflict = self_approval_conflict(person, people)
        if conflict is None and not allow_unknown_people:
            conflict = unknown_people_refusal(people)
        if conflict is not None:
            return conflict
    if person.user_id in approvals:
        return "you already approved this release"
    if approving and not break_glass_active:
        hold = freeze_hold(freezes, environment, at, window_until=break_glass_until)
        if hold is not None:
            closed = (
                f" (the break-glass window closed at {moment(hold.window_closed_at)})"
                if hold.window_closed_at is not None
                else ""
            )
            return f"{environment} is frozen: {hold.reason}; use break-glass{closed}"
    if approving and requirement.mode == "blocked":
        level = (
            f"{requirement.risk_level} risk" if requirement.risk_level else "this gate is blocked"
        )
        return f"{level}: only break-glass can pass this gate"
    return None


def closed_refusal(gate_status: str) -> str | None:
    """The first check of `decision_refusal` on its own: why nobody may decide on a gate in
    this status ("this gate was already approved"), or None while it is pending.

    Whatever else a decision would look at is irrelevant once this answers, so a caller may
    ask it before gathering the rest."""
    if gate_status not in _PENDING_ALIASES:
        return _CLOSED_REASONS.get(gate_status, f"this gate is {gate_status}, not pending")
    return None


def _not_an_approver(requirement: Requirement, mention: Mention) -> str:
    principals = requirement.principals()
    names = join([mention(p) for p in principals], "or")
    if principals and all(p.startswith("S") for p in principals):
        return f"you are not in {names}"
    return f"only {names} can decide on this gate" if principals else "this gate has no approvers"
