"""A gate's statuses, and the one answer given before a decision on it is recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final, Literal

from bot.config import ScheduledFreeze
from bot.domain.gates import refusal as refusals
from bot.domain.gates.common import Mention, plain, require_aware
from bot.domain.gates.freeze import freeze_hold
from bot.domain.gates.people import (
    Person,
    ReleasePeople,
    self_approval_conflict,
    unknown_people_refusal,
)
from bot.domain.gates.quorum import can_fill_a_seat
from bot.domain.gates.refusal import Refusal
from bot.domain.gates.requirement import Requirement

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
    production: bool | None = None,
    allow_unknown_people: bool = False,
) -> Refusal | None:
    """Why this person may not record this decision on the gate now, and what would make it
    succeed (`Refusal`), or None.

    Checked in order, the first that applies answers:
    1. the gate is no longer pending ("this gate was already approved");
    2. the person belongs to no rule ("you are not in S0RELMGRS or S0SREGRPS; ask someone
       from ... to decide it");
    3. approvals only, with `forbid_self_approval`: "you authored 2 of the commits; needs
       someone from ... who did not write the change"; and while the people behind the
       release are unknown (`people.unknown`), unless `allow_unknown_people`: "the people
       behind this change are unknown: ...; use break-glass, or let releasebot read ...";
    4. they already approved (`approvals`: user ids): "you already approved this release";
    5. approvals only, a freeze covers `environment` at `at` (unless a confirmed break-glass
       is active, or its window, `break_glass_until`, is still open): "production is frozen:
       Year-end change freeze; use break-glass, or wait until the freeze ends at ...",
       naming when a closed window closed (`production`: whether the environment is
       production for the service, for freezes with `production_only`);
    6. approvals only, a blocked gate: "critical risk: only break-glass can pass this gate".

    Rejecting is allowed to any approver who has not voted yet, during a freeze, on a blocked
    gate and on their own change (stopping a release is always safe). `mention` renders the
    people a remedy names (`slack_mention` for an answer in Slack).
    """
    require_aware(at, "at")
    if gate_status not in _PENDING_ALIASES:
        return refusals.closed(gate_status)
    principals = requirement.principals()
    if not can_fill_a_seat(requirement, person.user_id, memberships):
        return refusals.not_an_approver(principals, mention)
    approving = decision == "approve"
    if approving and forbid_self_approval:
        conflict = self_approval_conflict(person, people)
        if conflict is not None:
            return refusals.self_approval(conflict, principals, mention)
        unknown = None if allow_unknown_people else unknown_people_refusal(people)
        if unknown is not None:
            return refusals.people_unknown(unknown)
    if person.user_id in approvals:
        return refusals.already_voted(principals, mention)
    if approving and not break_glass_active:
        hold = freeze_hold(
            freezes, environment, at, window_until=break_glass_until, production=production
        )
        if hold is not None:
            return refusals.frozen(hold)
    if approving and requirement.mode == "blocked":
        return refusals.blocked(requirement.risk_level, requirement.budget)
    return None


def closed_refusal(gate_status: str) -> Refusal | None:
    """The first check of `decision_refusal` on its own: why nobody may decide on a gate in
    this status ("this gate was already approved"), or None while it is pending.

    Whatever else a decision would look at is irrelevant once this answers, so a caller may
    ask it before gathering the rest."""
    if gate_status not in _PENDING_ALIASES:
        return refusals.closed(gate_status)
    return None
