"""Who counts as whom, and whether the people who approved meet a gate's quorum.

Principals are Slack user ids (U..., W...) and user-group ids (S...). Group membership is an
input, never looked up here: `memberships` maps a user id to the principal ids that user
counts as (their groups; their own id always counts, listed or not). A person *belongs to* a
rule when one of those principals is among the rule's `approvers`.

The quorum. Every rule of `require` has `count` seats; each person who approved fills at
most one seat, and only a seat of a rule they belong to. The gate is met when every seat is
filled. That is a bipartite matching, not a count: someone in both S0RELMGRS and S0SREGRPS
fills one seat, and a second person from either group completes "1 release manager + 1 SRE"
because the first can move to the other seat. `evaluate` finds a maximum matching with
augmenting paths (Kuhn's algorithm), taking approvers in the order they approved, so among
several maximum matchings the earliest approvers hold the seats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.domain.gates.common import Mention, plain
from bot.domain.gates.requirement import Requirement, Rule
from bot.domain.wording import join

# --------------------------------------------------------------------------------------------
# Membership
# --------------------------------------------------------------------------------------------


def principals_of(user_id: str, memberships: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """Everything this user counts as: their own id plus whatever `memberships` lists."""
    return memberships.get(user_id, frozenset()) | {user_id}


def belongs_to(rule: Rule, user_id: str, memberships: Mapping[str, frozenset[str]]) -> bool:
    """The user is listed in the rule or is a member of a group it lists."""
    return matched_principal(rule, principals_of(user_id, memberships)) is not None


def matched_principal(rule: Rule, principals: frozenset[str]) -> str | None:
    """The first of the rule's approvers the person counts as (for "U1 (S0RELMGRS)")."""
    return next((p for p in rule.approvers if p in principals), None)


def can_fill_a_seat(
    requirement: Requirement, user_id: str, memberships: Mapping[str, frozenset[str]]
) -> bool:
    """Whether the person belongs to any rule: an approver of this gate at all.

    Looks at the rules in every mode (in a blocked gate they are who may still reject).
    """
    return any(belongs_to(rule, user_id, memberships) for rule in requirement.rules)


# --------------------------------------------------------------------------------------------
# The quorum: a maximum bipartite matching of people to seats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingSeats:
    """Seats of one rule nobody fills yet."""

    rule_index: int
    approvers: tuple[str, ...]
    still_needed: int


@dataclass(frozen=True)
class QuorumStatus:
    """Where a gate stands.

    `assignment` maps each person who fills a seat to the index of their rule, in the order
    they approved; `matched_as` says which principal of that rule they count as;
    `unassigned` lists approvers who fill no seat (not needed, or in no rule).
    """

    requirement: Requirement
    met: bool
    seats_filled: int
    seats_total: int
    assignment: dict[str, int]
    missing: tuple[MissingSeats, ...]
    matched_as: dict[str, str] = field(default_factory=dict)
    unassigned: tuple[str, ...] = ()

    def describe(self, mention: Mention = plain) -> str:
        """One line for the release message.

        `"1 of 2 approvals: waiting for 1 more from S0SREGRPS"`,
        `"approved by U1 (S0RELMGRS) and U2 (S0SREGRPS)"`. `mention` renders an id (for
        Slack, `<@U1>` or `<!subteam^S0RELMGRS>`); by default ids are shown as they are.
        """
        mode, why = self.requirement.mode, self.requirement.risk_level
        if mode == "auto_approve":
            return "no approval needed" + (f" ({why} risk)" if why else "")
        budget = self.requirement.budget
        if mode == "blocked":
            prefix = f"{budget}: " if budget else (f"{why} risk: " if why else "")
            return f"{prefix}blocked, only break-glass can pass this gate"
        if self.met:
            names = []
            for user in self.assignment:
                principal = self.matched_as.get(user, user)
                suffix = "" if principal == user else f" ({mention(principal)})"
                names.append(f"{mention(user)}{suffix}")
            return f"approved by {join(names)}"
        more = " more" if self.seats_filled else ""
        waiting = [
            f"{gap.still_needed}{more} from {join([mention(p) for p in gap.approvers], 'or')}"
            for gap in self.missing
        ]
        because = f" ({budget})" if budget else ""
        return (
            f"{self.seats_filled} of {self.seats_total} approvals: "
            f"waiting for {join(waiting)}{because}"
        )


def evaluate(
    requirement: Requirement,
    approvers: Sequence[str],
    memberships: Mapping[str, frozenset[str]],
) -> QuorumStatus:
    """Match the people who approved (user ids, in the order they approved) to seats.

    A repeated user id counts once. "auto_approve" is met and "blocked" never is, with no
    seats either way.
    """
    if requirement.mode != "quorum":
        return QuorumStatus(
            requirement=requirement,
            met=requirement.mode == "auto_approve",
            seats_filled=0,
            seats_total=0,
            assignment={},
            missing=(),
            unassigned=tuple(dict.fromkeys(approvers)),
        )
    people = list(dict.fromkeys(approvers))
    rules = requirement.rules
    principals = [principals_of(person, memberships) for person in people]
    seat_of = _maximum_matching(rules, principals)
    assignment: dict[str, int] = {}
    matched_as: dict[str, str] = {}
    for position, person in enumerate(people):
        if position in seat_of:
            index = seat_of[position]
            assignment[person] = index
            matched_as[person] = matched_principal(rules[index], principals[position]) or person
    filled = [0] * len(rules)
    for index in assignment.values():
        filled[index] += 1
    missing = tuple(
        MissingSeats(rule_index=i, approvers=rule.approvers, still_needed=rule.count - filled[i])
        for i, rule in enumerate(rules)
        if filled[i] < rule.count
    )
    return QuorumStatus(
        requirement=requirement,
        met=not missing,
        seats_filled=len(assignment),
        seats_total=requirement.seats,
        assignment=assignment,
        missing=missing,
        matched_as=matched_as,
        unassigned=tuple(person for person in people if person not in assignment),
    )


def _maximum_matching(
    rules: Sequence[Rule], principals: Sequence[frozenset[str]]
) -> dict[int, int]:
    """Kuhn's algorithm with `count` seats per rule: person index -> rule index.

    People are added in order and a matched person stays matched (an augmenting path only
    moves them to another seat), so the people who hold seats are the earliest that can.
    Rules are tried in index order, which makes the result deterministic.
    """
    eligible = [
        [i for i, rule in enumerate(rules) if matched_principal(rule, mine) is not None]
        for mine in principals
    ]
    holders: list[list[int]] = [[] for _ in rules]
    seat_of: dict[int, int] = {}

    def augment(person: int, visited: set[int]) -> bool:
        for index in eligible[person]:
            if index in visited:
                continue
            visited.add(index)
            if len(holders[index]) < rules[index].count:
                holders[index].append(person)
                seat_of[person] = index
                return True
            for holder in list(holders[index]):
                if augment(holder, visited):  # the holder moved to another rule's seat
                    holders[index].remove(holder)
                    holders[index].append(person)
                    seat_of[person] = index
                    return True
        return False

    total = sum(rule.count for rule in rules)
    for person in range(len(principals)):
        if len(seat_of) == total:
            break
        augment(person, set())
    return seat_of


def would_help(
    requirement: Requirement,
    approvers: Sequence[str],
    user_id: str,
    memberships: Mapping[str, frozenset[str]],
) -> bool:
    """Whether this person's approval would fill one more seat than the approvals so far.

    False for someone who already approved, for non-quorum modes and when the quorum is met.
    An approval that does not help now never becomes needed later: whatever seats it could
    take, the people already approved can take too.
    """
    if requirement.mode != "quorum" or user_id in approvers:
        return False
    before = evaluate(requirement, approvers, memberships).seats_filled
    after = evaluate(requirement, [*approvers, user_id], memberships).seats_filled
    return after > before


def unneeded_reason(
    requirement: Requirement,
    approvers: Sequence[str],
    user_id: str,
    memberships: Mapping[str, frozenset[str]],
    mention: Mention = plain,
) -> str | None:
    """Why this approver's approval would fill no seat, or None when it would (or they are
    no approver at all: `decision_refusal` answers that).

    "your approval isn't needed: the S0SREGRPS seat is still open and you're not in S0SREGRPS"
    """
    if requirement.mode != "quorum" or not can_fill_a_seat(requirement, user_id, memberships):
        return None
    if would_help(requirement, approvers, user_id, memberships):
        return None
    status = evaluate(requirement, approvers, memberships)
    if user_id in status.assignment:
        return None
    if status.met:
        return "your approval isn't needed: the gate has every approval it needs"
    open_seats = status.missing
    labels = [join([mention(p) for p in gap.approvers], "or") for gap in open_seats]
    seat = "seat is" if sum(gap.still_needed for gap in open_seats) == 1 else "seats are"
    return (
        f"your approval isn't needed: the {join(labels)} {seat} still open "
        f"and you're not in {join(labels, 'or')}"
    )
