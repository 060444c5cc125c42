"""Gate rules: who must approve, who may not, and when a gate reminds, expires or is frozen.

    requirement = requirement_for(env.gate, assessment.level)   # by_risk applied
    status = evaluate(requirement, approvals, memberships)       # a maximum matching
    status.met          # False
    status.describe()   # "1 of 2 approvals: waiting for 1 more from S0SREGRPS"
    decision_refusal(decision="approve", gate_status="pending", requirement=requirement, ...)
    # -> Refusal(reason="you authored 2 of the commits",
    #            remedy="needs someone from S0RELMGRS who did not write the change") | None

The rules, one module each:

    requirement   what a gate requires at a risk level (quorum, auto_approve, blocked)
    quorum        group membership and the quorum as a maximum bipartite matching
    people        the self-approval ban: authors, committers, mergers, reviewers, deployers
    timing        reminders, expiry, a newer release superseding a gate
    freeze        whether a change waits for a freeze, and what lets it through
    break_glass   the emergency pass: reason, confirmer, how long it holds
    decisions     a gate's statuses and why a decision is refused, in one answer
    refusal       every refusal as a reason and a remedy (what would make it succeed)

Pure: no I/O and no clock. Every moment is a parameter and must be timezone-aware.
"""

from __future__ import annotations

from bot.domain.gates.break_glass import (
    MIN_BREAK_GLASS_REASON,
    BreakGlassRequest,
    break_glass_check,
    break_glass_valid_until,
)
from bot.domain.gates.decisions import (
    APPROVED,
    EXPIRED,
    GATE_STATUSES,
    PENDING,
    REJECTED,
    SUPERSEDED,
    Decision,
    closed_refusal,
    decision_refusal,
)
from bot.domain.gates.freeze import (
    FORWARD,
    ROLLBACK,
    Change,
    FreezeHold,
    break_glass_until,
    break_glass_window,
    freeze_hold,
    moment,
)
from bot.domain.gates.people import (
    Person,
    ReleasePeople,
    asked_of_people,
    blind_note,
    noreply_login,
    not_automatic_note,
    self_approval_conflict,
    unknown_people_refusal,
)
from bot.domain.gates.quorum import (
    MissingSeats,
    QuorumStatus,
    belongs_to,
    can_fill_a_seat,
    evaluate,
    principals_of,
    unneeded_reason,
    would_help,
)
from bot.domain.gates.refusal import Refusal, slack_mention
from bot.domain.gates.requirement import Mode, Requirement, Rule, requirement_for
from bot.domain.gates.timing import (
    DueAction,
    GateBinding,
    GateTimes,
    active_freeze,
    due_action,
    supersedes,
)

__all__ = [
    "APPROVED",
    "EXPIRED",
    "FORWARD",
    "GATE_STATUSES",
    "MIN_BREAK_GLASS_REASON",
    "PENDING",
    "REJECTED",
    "ROLLBACK",
    "SUPERSEDED",
    "BreakGlassRequest",
    "Change",
    "Decision",
    "DueAction",
    "FreezeHold",
    "GateBinding",
    "GateTimes",
    "MissingSeats",
    "Mode",
    "Person",
    "QuorumStatus",
    "Refusal",
    "ReleasePeople",
    "Requirement",
    "Rule",
    "active_freeze",
    "asked_of_people",
    "belongs_to",
    "blind_note",
    "break_glass_check",
    "break_glass_until",
    "break_glass_valid_until",
    "break_glass_window",
    "can_fill_a_seat",
    "closed_refusal",
    "decision_refusal",
    "due_action",
    "evaluate",
    "freeze_hold",
    "moment",
    "noreply_login",
    "not_automatic_note",
    "principals_of",
    "requirement_for",
    "self_approval_conflict",
    "slack_mention",
    "supersedes",
    "unknown_people_refusal",
    "unneeded_reason",
    "would_help",
]
