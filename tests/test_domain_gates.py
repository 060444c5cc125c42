"""Gate rules: the example config's gates at each risk level, the quorum as a matching (hand
cases and hypothesis properties against a brute-force search), the self-approval ban,
freezes, expiry, break-glass and the order of refusals."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import BreakGlass, Config, GatePolicy, Identity, load_config
from bot.domain.gates import (
    BreakGlassRequest,
    GateBinding,
    GateTimes,
    MissingSeats,
    Person,
    Refusal,
    ReleasePeople,
    Requirement,
    Rule,
    active_freeze,
    break_glass_check,
    break_glass_valid_until,
    can_fill_a_seat,
    decision_refusal,
    due_action,
    evaluate,
    requirement_for,
    self_approval_conflict,
    supersedes,
    unneeded_reason,
    would_help,
)
from tests.helpers import EXAMPLE_CONFIG

RELMGRS = "S0RELMGRS"
SREGRPS = "S0SREGRPS"
RM = "U0RELMGR1"
RM2 = "U0RELMGR2"
SRE = "U0SRE0001"
BOTH = "U0BOTH001"  # a release manager who is also an SRE
OUTSIDER = "U0OUTSIDE"
OWNER = "U0OWNER01"  # in the example's identities: github octo-owner, gitlab owner

MEMBERS: dict[str, frozenset[str]] = {
    RM: frozenset({RELMGRS}),
    RM2: frozenset({RELMGRS}),
    SRE: frozenset({SREGRPS}),
    BOTH: frozenset({RELMGRS, SREGRPS}),
    OWNER: frozenset({RELMGRS}),
}

MON_NOON = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
IN_FREEZE = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(EXAMPLE_CONFIG)


def gate_of(config: Config, service: str, environment: str = "production") -> GatePolicy:
    env = config.services[service].environment(environment)
    assert env is not None and env.gate is not None
    return env.gate


def owner(config: Config, email: str | None = None) -> Person:
    return Person.from_config(OWNER, email, config.identities)


# --------------------------------------------------------------------------------------------
# The example config's gates, level by level
# --------------------------------------------------------------------------------------------


def test_low_risk_auto_approves(config: Config) -> None:
    requirement = requirement_for(gate_of(config, "checkout"), "low")
    assert requirement.mode == "auto_approve"
    status = evaluate(requirement, [], MEMBERS)
    assert status.met and status.seats_total == 0
    assert status.describe() == "no approval needed (low risk)"


@pytest.mark.parametrize("level", ["medium", None])
def test_medium_risk_needs_one_release_manager(config: Config, level: str | None) -> None:
    requirement = requirement_for(gate_of(config, "checkout"), level)
    assert requirement == Requirement("quorum", (Rule((RELMGRS,), 1),), level)
    waiting = evaluate(requirement, [], MEMBERS)
    assert not waiting.met
    assert waiting.describe() == "0 of 1 approvals: waiting for 1 from S0RELMGRS"
    assert not evaluate(requirement, [SRE, OUTSIDER], MEMBERS).met
    status = evaluate(requirement, [RM], MEMBERS)
    assert status.met and status.assignment == {RM: 0}
    assert status.describe() == "approved by U0RELMGR1 (S0RELMGRS)"


def test_high_risk_needs_a_release_manager_and_an_sre(config: Config) -> None:
    requirement = requirement_for(gate_of(config, "checkout"), "high")
    assert requirement.rules == (Rule((RELMGRS,), 1), Rule((SREGRPS,), 1))
    assert requirement.describe() == "1 from S0RELMGRS and 1 from S0SREGRPS (distinct people)"

    alone = evaluate(requirement, [BOTH], MEMBERS)
    assert not alone.met
    assert (alone.seats_filled, alone.seats_total) == (1, 2)
    assert alone.missing == (MissingSeats(1, (SREGRPS,), 1),)
    assert alone.describe() == "1 of 2 approvals: waiting for 1 more from S0SREGRPS"

    # A second release manager pushes the person in both groups onto the SRE seat.
    status = evaluate(requirement, [BOTH, RM], MEMBERS)
    assert status.met
    assert status.assignment == {BOTH: 1, RM: 0}
    assert status.describe() == "approved by U0BOTH001 (S0SREGRPS) and U0RELMGR1 (S0RELMGRS)"
    assert evaluate(requirement, [BOTH, SRE], MEMBERS).met
    assert evaluate(requirement, [SRE, BOTH], MEMBERS).met

    # Two release managers are still no SRE; the same person twice is one person.
    assert not evaluate(requirement, [RM, RM2], MEMBERS).met
    assert evaluate(requirement, [BOTH, BOTH], MEMBERS).seats_filled == 1


def test_critical_risk_is_blocked(config: Config) -> None:
    requirement = requirement_for(gate_of(config, "checkout"), "critical")
    assert requirement.mode == "blocked"
    status = evaluate(requirement, [RM, SRE, BOTH], MEMBERS)
    assert not status.met and status.seats_total == 0
    assert status.describe() == "critical risk: blocked, only break-glass can pass this gate"
    assert requirement.describe() == "blocked (critical risk): only break-glass can pass"
    # The gate's own rules still say who may reject it.
    assert can_fill_a_seat(requirement, RM, MEMBERS)
    assert not can_fill_a_seat(requirement, OUTSIDER, MEMBERS)


def test_ledger_shorthand_needs_two_distinct_release_managers(config: Config) -> None:
    requirement = requirement_for(gate_of(config, "ledger"), "high")  # no by_risk: unchanged
    assert requirement.rules == (Rule((RELMGRS,), 2),)
    assert not evaluate(requirement, [RM, RM], MEMBERS).met
    assert not evaluate(requirement, [RM, SRE], MEMBERS).met
    status = evaluate(requirement, [SRE, RM, RM2, BOTH], MEMBERS)
    assert status.met and status.assignment == {RM: 0, RM2: 0}
    assert status.unassigned == (SRE, BOTH)
    half = evaluate(requirement, [RM], MEMBERS)
    assert half.describe() == "1 of 2 approvals: waiting for 1 more from S0RELMGRS"


def test_a_by_risk_entry_that_sets_nothing_keeps_require() -> None:
    gate = GatePolicy.model_validate({"approvals": 1, "approvers": [RM], "by_risk": {"high": {}}})
    assert requirement_for(gate, "high") == Requirement("quorum", (Rule((RM,), 1),), "high")


def test_listed_users_and_groups_both_count() -> None:
    requirement = Requirement("quorum", (Rule((RELMGRS, SRE), 2),))
    status = evaluate(requirement, [SRE, RM, OUTSIDER], {RM: frozenset({RELMGRS})})
    assert status.met
    assert status.describe() == "approved by U0SRE0001 and U0RELMGR1 (S0RELMGRS)"
    assert status.unassigned == (OUTSIDER,)
    waiting = evaluate(requirement, [], {})
    assert waiting.describe() == "0 of 2 approvals: waiting for 2 from S0RELMGRS or U0SRE0001"


def test_describe_renders_ids_with_the_callers_mentions() -> None:
    requirement = Requirement("quorum", (Rule((RELMGRS,), 1), Rule((SREGRPS,), 1)))

    def mention(principal: str) -> str:
        return f"<!subteam^{principal}>" if principal.startswith("S") else f"<@{principal}>"

    status = evaluate(requirement, [RM], MEMBERS)
    assert (
        status.describe(mention) == "1 of 2 approvals: waiting for 1 more from <!subteam^S0SREGRPS>"
    )
    done = evaluate(requirement, [RM, SRE], MEMBERS)
    assert done.describe(mention) == (
        "approved by <@U0RELMGR1> (<!subteam^S0RELMGRS>) and <@U0SRE0001> (<!subteam^S0SREGRPS>)"
    )


def test_earlier_approvers_hold_the_seats() -> None:
    requirement = Requirement("quorum", (Rule((RELMGRS,), 1),))
    assert evaluate(requirement, [RM2, RM, BOTH], MEMBERS).assignment == {RM2: 0}
    assert evaluate(requirement, [BOTH, RM2, RM], MEMBERS).assignment == {BOTH: 0}


def test_requirement_storage_round_trip(config: Config) -> None:
    for level in (None, "low", "medium", "high", "critical"):
        requirement = requirement_for(gate_of(config, "checkout"), level)
        data = requirement.to_dict()
        assert Requirement.from_dict(data) == requirement
        assert data == {
            "mode": requirement.mode,
            "rules": [
                {"approvers": list(r.approvers), "count": r.count} for r in requirement.rules
            ],
            "risk_level": level,
        }


@pytest.mark.parametrize(
    "data",
    [
        {"mode": "maybe", "rules": []},
        {"mode": "quorum", "rules": []},
        {"mode": "quorum", "rules": "S0RELMGRS"},
        {"mode": "quorum", "rules": [{"approvers": [], "count": 1}]},
        {"mode": "quorum", "rules": [{"approvers": [RELMGRS], "count": 0}]},
        {"mode": "quorum", "rules": [{"approvers": [RELMGRS], "count": True}]},
        {"mode": "quorum", "rules": [{"approvers": [RELMGRS], "count": "1"}]},
        {"mode": "quorum", "rules": [[RELMGRS]]},
        {"mode": "blocked", "rules": [], "risk_level": 3},
    ],
)
def test_requirement_from_dict_refuses_what_to_dict_never_writes(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Requirement.from_dict(data)


# --------------------------------------------------------------------------------------------
# Who can help
# --------------------------------------------------------------------------------------------


def test_would_help_and_the_unneeded_reason() -> None:
    requirement = Requirement("quorum", (Rule((RELMGRS,), 1), Rule((SREGRPS,), 1)))
    assert would_help(requirement, [RM], SRE, MEMBERS)
    assert would_help(requirement, [RM], BOTH, MEMBERS)  # RM keeps the RM seat, BOTH the SRE's
    assert not would_help(requirement, [RM], RM2, MEMBERS)
    assert not would_help(requirement, [RM], RM, MEMBERS)  # already approved
    assert not would_help(requirement, [RM], OUTSIDER, MEMBERS)
    assert unneeded_reason(requirement, [RM], RM2, MEMBERS) == (
        "your approval isn't needed: the S0SREGRPS seat is still open and you're not in S0SREGRPS"
    )
    assert unneeded_reason(requirement, [RM], SRE, MEMBERS) is None
    assert unneeded_reason(requirement, [RM], OUTSIDER, MEMBERS) is None  # not an approver
    assert unneeded_reason(requirement, [RM, SRE], RM2, MEMBERS) == (
        "your approval isn't needed: the gate has every approval it needs"
    )
    blocked = Requirement("blocked", requirement.rules)
    assert not would_help(blocked, [], RM, MEMBERS)
    assert unneeded_reason(blocked, [], RM, MEMBERS) is None


# --------------------------------------------------------------------------------------------
# Self-approval
# --------------------------------------------------------------------------------------------


def test_self_approval_matches_code_host_logins_case_insensitively(config: Config) -> None:
    people = ReleasePeople(authors=("octo-owner", "alice", "Octo-Owner"))
    assert self_approval_conflict(owner(config), people) == "you authored 2 of the commits"
    gitlab = ReleasePeople(committers=("bob", "OWNER"))
    assert self_approval_conflict(owner(config), gitlab) == "you committed 1 of the commits"
    assert self_approval_conflict(owner(config), ReleasePeople(authors=("alice",))) is None
    # Nobody listed in identities is matched by e-mail only.
    stranger = Person(user_id=RM, email=None, identity=None)
    assert self_approval_conflict(stranger, people) is None


def test_self_approval_matches_slack_and_identity_emails(config: Config) -> None:
    people = ReleasePeople(
        authors=("", "alice", ""),
        author_emails=("Owner@Acme.example", "alice@acme.example", "owner@acme.example"),
    )
    assert self_approval_conflict(owner(config, "owner@acme.example"), people) == (
        "you authored 2 of the commits"
    )
    assert self_approval_conflict(owner(config), people) is None  # Slack gave no e-mail
    listed = Person(RM, None, Identity(email="rm@acme.example"))
    by_identity = ReleasePeople(author_emails=("RM@acme.example",))
    assert self_approval_conflict(listed, by_identity) == "you authored 1 of the commits"


def test_a_commit_matched_by_login_and_email_counts_once(config: Config) -> None:
    person = owner(config, "owner@acme.example")
    parallel = ReleasePeople(
        authors=("octo-owner", "octo-owner", "alice"),
        author_emails=("owner@acme.example", "other@acme.example", "owner@acme.example"),
    )
    assert self_approval_conflict(person, parallel) == "you authored 3 of the commits"
    # Lists that do not line up are counted apart; the larger count wins.
    apart = ReleasePeople(authors=("octo-owner",), author_emails=("owner@acme.example",) * 2)
    assert self_approval_conflict(person, apart) == "you authored 2 of the commits"


def test_github_noreply_address_is_the_login(config: Config) -> None:
    people = ReleasePeople(author_emails=("1234+Octo-Owner@users.noreply.github.com",))
    assert self_approval_conflict(owner(config), people) == "you authored 1 of the commits"
    other = ReleasePeople(author_emails=("1234+octo-other@users.noreply.github.com",))
    assert self_approval_conflict(owner(config), other) is None


def test_self_approval_reasons_combine(config: Config) -> None:
    person = owner(config)
    assert self_approval_conflict(person, ReleasePeople(mergers=("octo-owner",))) == (
        "you merged this change"
    )
    assert self_approval_conflict(person, ReleasePeople(mergers=("alice", "octo-owner"))) == (
        "you merged 1 of the changes"
    )
    # A deploy the bot started for a Slack user names them by Slack id.
    assert self_approval_conflict(person, ReleasePeople(deployers=(OWNER,))) == (
        "you started this deployment"
    )
    both = ReleasePeople(authors=("octo-owner", "octo-owner", "alice"), deployers=("owner",))
    assert self_approval_conflict(person, both) == (
        "you authored 2 of the commits and started this deployment"
    )
    everything = ReleasePeople(
        authors=("octo-owner",),
        committers=("octo-owner",),
        mergers=("octo-owner",),
        deployers=("OCTO-OWNER",),
    )
    assert self_approval_conflict(person, everything) == (
        "you authored 1 of the commits, committed 1 of the commits, merged this change "
        "and started this deployment"
    )


def test_blank_names_match_nobody(config: Config) -> None:
    people = ReleasePeople(authors=("", " "), author_emails=("", ""), deployers=("",))
    assert self_approval_conflict(Person(RM, ""), people) is None
    assert self_approval_conflict(owner(config, ""), people) is None


# --------------------------------------------------------------------------------------------
# Freezes
# --------------------------------------------------------------------------------------------


def test_year_end_freeze_covers_production_not_staging(config: Config) -> None:
    freeze = active_freeze(config.freezes, "production", IN_FREEZE)
    assert freeze is not None and freeze.reason == "Year-end change freeze"
    assert active_freeze(config.freezes, "staging", IN_FREEZE) is None
    assert active_freeze(config.freezes, "production", MON_NOON) is None
    start = datetime(2026, 12, 23, 0, 0, tzinfo=freeze.start.tzinfo)
    end = datetime(2027, 1, 4, 0, 0, tzinfo=freeze.end.tzinfo)
    assert active_freeze(config.freezes, "production", start) == freeze
    assert active_freeze(config.freezes, "production", start - timedelta(microseconds=1)) is None
    assert active_freeze(config.freezes, "production", end - timedelta(microseconds=1)) == freeze
    assert active_freeze(config.freezes, "production", end) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        active_freeze(config.freezes, "production", datetime(2026, 12, 24, 10, 0))


# --------------------------------------------------------------------------------------------
# Expiry and reminders
# --------------------------------------------------------------------------------------------


def test_reminder_then_expiry_at_the_boundaries(config: Config) -> None:
    times = GateTimes.from_gate(gate_of(config, "checkout"), MON_NOON)
    assert times.remind_at == MON_NOON + timedelta(hours=1)
    assert times.expires_at == MON_NOON + timedelta(hours=4)
    tick = timedelta(microseconds=1)
    assert due_action(times, MON_NOON, reminded=False) == "none"
    assert due_action(times, MON_NOON + timedelta(hours=1) - tick, reminded=False) == "none"
    assert due_action(times, MON_NOON + timedelta(hours=1), reminded=False) == "remind"
    assert due_action(times, MON_NOON + timedelta(hours=1), reminded=True) == "none"
    assert due_action(times, times.expires_at - tick, reminded=False) == "remind"
    assert due_action(times, times.expires_at - tick, reminded=True) == "none"
    assert due_action(times, times.expires_at, reminded=False) == "expire"
    assert due_action(times, times.expires_at, reminded=True) == "expire"
    assert due_action(times, times.expires_at + timedelta(days=3), reminded=True) == "expire"


def test_a_gate_without_remind_after_only_expires(config: Config) -> None:
    times = GateTimes.from_gate(gate_of(config, "ledger"), MON_NOON)
    assert times.remind_at is None and times.expires_at == MON_NOON + timedelta(hours=8)
    assert due_action(times, times.expires_at - timedelta(seconds=1), reminded=False) == "none"
    assert due_action(times, times.expires_at, reminded=False) == "expire"
    with pytest.raises(ValueError, match="timezone-aware"):
        due_action(times, datetime(2026, 3, 9, 20, 0), reminded=False)


def test_a_newer_sha_supersedes_the_pending_gate() -> None:
    pending = GateBinding("checkout", "production", "a" * 40)
    assert supersedes(GateBinding("checkout", "production", "b" * 40), pending)
    assert not supersedes(GateBinding("checkout", "production", "A" * 40), pending)
    assert not supersedes(GateBinding("checkout", "staging", "b" * 40), pending)
    assert not supersedes(GateBinding("ledger", "production", "b" * 40), pending)


# --------------------------------------------------------------------------------------------
# Break-glass
# --------------------------------------------------------------------------------------------

OWNER_AUTHORED = ReleasePeople(authors=("octo-owner",))
REASON = "payments down, hotfix for INC-142"


def request(by: str = RM, reason: str = REASON, at: datetime = IN_FREEZE) -> BreakGlassRequest:
    return BreakGlassRequest(requested_by=by, reason=reason, requested_at=at)


def test_break_glass_needs_a_second_person_from_its_approvers(config: Config) -> None:
    glass = config.break_glass
    assert glass is not None
    now = IN_FREEZE + timedelta(minutes=5)
    assert break_glass_check(glass, request(), SRE, MEMBERS, now) is None
    assert break_glass_check(glass, request(by=OUTSIDER), RM, MEMBERS, now) is None
    second = break_glass_check(glass, request(), RM, MEMBERS, now)
    assert second is not None and second.reason == (
        "break-glass needs a second person: someone else must confirm your request"
    )
    assert second.remedy == "ask someone from S0RELMGRS or S0SREGRPS to confirm it"
    outsider = break_glass_check(glass, request(), OUTSIDER, MEMBERS, now)
    assert outsider is not None
    assert outsider.reason == "only S0RELMGRS or S0SREGRPS can confirm break-glass"


def test_break_glass_needs_a_real_reason_and_a_configured_section(config: Config) -> None:
    glass = config.break_glass
    assert glass is not None
    now = IN_FREEZE
    short = break_glass_check(glass, request(reason="  urgent!  "), SRE, MEMBERS, now)
    assert short is not None and "at least 10 characters" in short.reason
    assert break_glass_check(glass, request(reason="x" * 10), SRE, MEMBERS, now) is None
    missing = break_glass_check(None, request(), SRE, MEMBERS, now)
    assert missing is not None and "not configured" in missing.reason
    assert "add a break_glass section" in missing.remedy


def test_break_glass_request_lapses_and_grant_is_time_boxed(config: Config) -> None:
    glass = config.break_glass
    assert glass is not None
    lapsed = break_glass_check(glass, request(), SRE, MEMBERS, IN_FREEZE + timedelta(hours=2))
    assert lapsed is not None and "lapsed" in lapsed.reason and "ask again" in lapsed.remedy
    assert break_glass_valid_until(glass, IN_FREEZE) == IN_FREEZE + timedelta(hours=2)


def test_break_glass_without_second_person_lets_an_approver_confirm_alone() -> None:
    solo = BreakGlass(approvers=[RELMGRS], second_person=False, valid_for=timedelta(hours=1))
    assert break_glass_check(solo, request(), RM, MEMBERS, IN_FREEZE) is None
    refused = break_glass_check(solo, request(by=OUTSIDER), OUTSIDER, MEMBERS, IN_FREEZE)
    assert refused is not None and refused.reason == "only S0RELMGRS can confirm break-glass"


# --------------------------------------------------------------------------------------------
# decision_refusal: the checks and their order
# --------------------------------------------------------------------------------------------


def refusal(
    config: Config,
    *,
    decision: str = "approve",
    status: str = "pending",
    level: str | None = "high",
    person: Person | None = None,
    people: ReleasePeople = OWNER_AUTHORED,
    approvals: Sequence[str] = (),
    environment: str = "production",
    at: datetime = MON_NOON,
    break_glass_active: bool = False,
    memberships: Mapping[str, frozenset[str]] = MEMBERS,
) -> str | None:
    """The reason of the refusal (`remedy`, what would make it succeed, aside)."""
    refused = remedied(
        config,
        decision=decision,
        status=status,
        level=level,
        person=person,
        people=people,
        approvals=approvals,
        environment=environment,
        at=at,
        break_glass_active=break_glass_active,
        memberships=memberships,
    )
    return None if refused is None else refused.reason


def remedied(
    config: Config,
    *,
    decision: str = "approve",
    status: str = "pending",
    level: str | None = "high",
    person: Person | None = None,
    people: ReleasePeople = OWNER_AUTHORED,
    approvals: Sequence[str] = (),
    environment: str = "production",
    at: datetime = MON_NOON,
    break_glass_active: bool = False,
    memberships: Mapping[str, frozenset[str]] = MEMBERS,
) -> Refusal | None:
    gate = gate_of(config, "checkout")
    return decision_refusal(
        decision="approve" if decision == "approve" else "reject",
        gate_status=status,
        requirement=requirement_for(gate, level),
        forbid_self_approval=gate.forbid_self_approval,
        person=person or Person(RM),
        people=people,
        approvals=approvals,
        memberships=memberships,
        environment=environment,
        freezes=config.freezes,
        at=at,
        break_glass_active=break_glass_active,
    )


def test_an_approver_may_approve_and_reject(config: Config) -> None:
    assert refusal(config) is None
    assert refusal(config, decision="reject") is None
    assert refusal(config, status="awaiting_approval") is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("approved", "this gate was already approved"),
        ("rejected", "this gate was already rejected"),
        ("expired", "this gate already expired"),
        ("superseded", "this gate was superseded by a newer release"),
        ("in_progress", "this gate is in_progress, not pending"),
    ],
)
def test_only_a_pending_gate_takes_decisions(config: Config, status: str, reason: str) -> None:
    assert refusal(config, status=status, person=Person(OUTSIDER)) == reason
    refused = remedied(config, status=status, person=Person(OUTSIDER))
    assert refused is not None and refused.remedy  # what would make it succeed, always


def test_an_expired_gate_names_re_request(config: Config) -> None:
    refused = remedied(config, status="expired")
    assert refused is not None and refused.text == (
        "this gate already expired; ask for a new approval (Re-request on the release message)"
    )


def test_non_approvers_are_told_who_decides(config: Config) -> None:
    assert refusal(config, person=Person(OUTSIDER)) == "you are not in S0RELMGRS or S0SREGRPS"
    assert refusal(config, level="medium", person=Person(SRE)) == "you are not in S0RELMGRS"
    assert refusal(config, decision="reject", person=Person(OUTSIDER)) == (
        "you are not in S0RELMGRS or S0SREGRPS"
    )
    mixed = Requirement("quorum", (Rule((RELMGRS, RM2), 1),))
    reason = decision_refusal(
        decision="approve",
        gate_status="pending",
        requirement=mixed,
        forbid_self_approval=True,
        person=Person(OUTSIDER),
        people=ReleasePeople(),
        approvals=(),
        memberships=MEMBERS,
        environment="production",
        freezes=(),
        at=MON_NOON,
    )
    assert reason is not None
    assert reason.reason == "only S0RELMGRS or U0RELMGR2 can decide on this gate"
    assert reason.remedy == "ask someone from S0RELMGRS or U0RELMGR2 to decide it"


def test_self_approval_is_refused_but_rejecting_your_own_change_is_not(config: Config) -> None:
    me = owner(config)
    assert refusal(config, person=me) == "you authored 1 of the commits"
    assert refusal(config, person=me, decision="reject") is None
    # Checked before "already approved" and before the freeze.
    assert refusal(config, person=me, approvals=[OWNER], at=IN_FREEZE) == (
        "you authored 1 of the commits"
    )


def test_self_approval_is_allowed_when_the_gate_allows_it(config: Config) -> None:
    gate = gate_of(config, "checkout").model_copy(update={"forbid_self_approval": False})
    reason = decision_refusal(
        decision="approve",
        gate_status="pending",
        requirement=requirement_for(gate, "medium"),
        forbid_self_approval=gate.forbid_self_approval,
        person=owner(config),
        people=ReleasePeople(authors=("octo-owner",)),
        approvals=(),
        memberships=MEMBERS,
        environment="production",
        freezes=config.freezes,
        at=MON_NOON,
    )
    assert reason is None


def test_one_vote_per_person(config: Config) -> None:
    assert refusal(config, approvals=[RM]) == "you already approved this release"
    assert refusal(config, approvals=[RM], decision="reject") == "you already approved this release"
    assert refusal(config, approvals=[SRE]) is None


def test_freeze_refuses_approvals_when_the_decision_is_taken(config: Config) -> None:
    assert refusal(config, at=IN_FREEZE) == "production is frozen: Year-end change freeze"
    frozen = remedied(config, at=IN_FREEZE)
    assert frozen is not None and frozen.text == (
        "production is frozen: Year-end change freeze; use break-glass, or wait until the "
        "freeze ends at 2027-01-03 23:00 UTC"
    )
    assert refusal(config, at=IN_FREEZE, environment="staging") is None
    assert refusal(config, at=IN_FREEZE, decision="reject") is None
    assert refusal(config, at=IN_FREEZE, break_glass_active=True) is None
    # Already voted comes first, the freeze before the block.
    assert refusal(config, at=IN_FREEZE, approvals=[RM]) == "you already approved this release"
    assert refusal(config, at=IN_FREEZE, level="critical") == (
        "production is frozen: Year-end change freeze"
    )


def test_blocked_gate_refuses_approvals_only(config: Config) -> None:
    assert refusal(config, level="critical") == (
        "critical risk: only break-glass can pass this gate"
    )
    assert refusal(config, level="critical", decision="reject") is None
    # The gate's own rules (one release manager) still say who may reject it.
    assert refusal(config, level="critical", person=Person(SRE)) == "you are not in S0RELMGRS"


# --------------------------------------------------------------------------------------------
# Properties of the quorum
# --------------------------------------------------------------------------------------------

GROUPS = ("S0GRPA", "S0GRPB", "S0GRPC")
PEOPLE = ("U0P1", "U0P2", "U0P3", "U0P4", "U0P5")

rules_strategy = st.lists(
    st.builds(
        Rule,
        approvers=st.lists(st.sampled_from(GROUPS + PEOPLE[:2]), min_size=1, max_size=3).map(tuple),
        count=st.integers(min_value=1, max_value=2),
    ),
    min_size=1,
    max_size=4,
).map(tuple)
memberships_strategy = st.fixed_dictionaries(
    {person: st.frozensets(st.sampled_from(GROUPS)) for person in PEOPLE}
)
approvers_strategy = st.lists(st.sampled_from(PEOPLE), max_size=7)


def brute_force_best(
    rules: Sequence[Rule], people: Sequence[str], memberships: Mapping[str, frozenset[str]]
) -> int:
    """The most seats any assignment fills, trying every person at every rule or at none."""
    options: list[list[int | None]] = []
    for person in dict.fromkeys(people):
        mine = memberships.get(person, frozenset()) | {person}
        options.append([None, *(i for i, r in enumerate(rules) if mine & set(r.approvers))])
    best = 0
    for choice in itertools.product(*options):
        taken = [index for index in choice if index is not None]
        if all(taken.count(i) <= rule.count for i, rule in enumerate(rules)):
            best = max(best, len(taken))
    return best


@settings(max_examples=300, deadline=None)
@given(rules=rules_strategy, memberships=memberships_strategy, approvers=approvers_strategy)
def test_quorum_is_met_exactly_when_an_assignment_exists(
    rules: tuple[Rule, ...], memberships: dict[str, frozenset[str]], approvers: list[str]
) -> None:
    requirement = Requirement("quorum", rules)
    status = evaluate(requirement, approvers, memberships)
    best = brute_force_best(rules, approvers, memberships)
    assert status.seats_filled == best
    assert status.met == (best == requirement.seats)
    # The assignment is a valid one: seats of rules people belong to, none over count.
    for person, index in status.assignment.items():
        mine = memberships[person] | {person}
        assert mine & set(rules[index].approvers)
        assert status.matched_as[person] in rules[index].approvers
    for index, rule in enumerate(rules):
        assert list(status.assignment.values()).count(index) <= rule.count
    assert sum(gap.still_needed for gap in status.missing) == status.seats_total - best
    assert set(status.assignment) | set(status.unassigned) == set(approvers)


@given(rules=rules_strategy, memberships=memberships_strategy, approvers=approvers_strategy)
def test_seats_filled_never_exceeds_people_or_seats(
    rules: tuple[Rule, ...], memberships: dict[str, frozenset[str]], approvers: list[str]
) -> None:
    status = evaluate(Requirement("quorum", rules), approvers, memberships)
    assert status.seats_filled <= len(set(approvers))
    assert status.seats_filled <= status.seats_total == sum(rule.count for rule in rules)
    assert status.seats_filled == len(status.assignment)


@given(
    rules=rules_strategy,
    memberships=memberships_strategy,
    approvers=approvers_strategy,
    newcomer=st.sampled_from(PEOPLE),
)
def test_another_approval_never_loses_a_seat(
    rules: tuple[Rule, ...],
    memberships: dict[str, frozenset[str]],
    approvers: list[str],
    newcomer: str,
) -> None:
    requirement = Requirement("quorum", rules)
    before = evaluate(requirement, approvers, memberships)
    after = evaluate(requirement, [*approvers, newcomer], memberships)
    assert before.seats_filled <= after.seats_filled <= before.seats_filled + 1
    assert after.met or not before.met
    helped = after.seats_filled > before.seats_filled
    assert would_help(requirement, approvers, newcomer, memberships) == helped
    # People who held seats keep one: a later approver only moves them.
    assert set(before.assignment) <= set(after.assignment)


@given(
    rules=rules_strategy,
    memberships=memberships_strategy,
    approvers=approvers_strategy,
    data=st.data(),
)
def test_order_of_approvals_does_not_change_the_outcome(
    rules: tuple[Rule, ...],
    memberships: dict[str, frozenset[str]],
    approvers: list[str],
    data: st.DataObject,
) -> None:
    requirement = Requirement("quorum", rules)
    shuffled = data.draw(st.permutations(approvers))
    first = evaluate(requirement, approvers, memberships)
    second = evaluate(requirement, shuffled, memberships)
    assert first.met == second.met
    assert first.seats_filled == second.seats_filled
    assert evaluate(requirement, approvers, memberships) == first  # deterministic


@given(rules=rules_strategy, level=st.none() | st.sampled_from(["low", "high"]))
def test_requirement_round_trips_through_storage(
    rules: tuple[Rule, ...], level: str | None
) -> None:
    for mode in ("quorum", "auto_approve", "blocked"):
        requirement = Requirement(mode, rules, level)
        assert Requirement.from_dict(requirement.to_dict()) == requirement
