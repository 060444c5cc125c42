"""Gate rules: who must approve, who may not, and when a gate reminds, expires or is frozen.

    requirement = requirement_for(env.gate, assessment.level)   # by_risk applied
    status = evaluate(requirement, approvals, memberships)       # a maximum matching
    status.met          # False
    status.describe()   # "1 of 2 approvals: waiting for 1 more from S0SREGRPS"
    decision_refusal(decision="approve", gate_status="pending", requirement=requirement, ...)
    # -> "you authored 2 of the commits" | None

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

`by_risk` per level: `auto_approve` (continuous deployment: nobody is asked), `blocked` (no
number of approvals passes, only break-glass) or a stricter `require`. In both non-quorum
modes `Requirement.rules` keeps the gate's own `require`: that is who is told about the gate
and who may still reject it.

The self-approval ban covers everyone who authored, committed or merged a change in the
release or started its deployment, matched through `identities` (GitHub/GitLab logins,
e-mail) and the e-mail Slack reports for the user (users.info).

Pure: no I/O and no clock. Every moment is a parameter and must be timezone-aware.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from bot.config import BreakGlass, Freeze, Gate, Identity

__all__ = [
    "APPROVED",
    "EXPIRED",
    "GATE_STATUSES",
    "MIN_BREAK_GLASS_REASON",
    "PENDING",
    "REJECTED",
    "SUPERSEDED",
    "BreakGlassRequest",
    "Decision",
    "DueAction",
    "GateBinding",
    "GateTimes",
    "MissingSeats",
    "Mode",
    "Person",
    "QuorumStatus",
    "ReleasePeople",
    "Requirement",
    "Rule",
    "active_freeze",
    "belongs_to",
    "break_glass_check",
    "break_glass_valid_until",
    "can_fill_a_seat",
    "closed_refusal",
    "decision_refusal",
    "due_action",
    "evaluate",
    "principals_of",
    "requirement_for",
    "self_approval_conflict",
    "supersedes",
    "unneeded_reason",
    "would_help",
]

Mode = Literal["quorum", "auto_approve", "blocked"]
Decision = Literal["approve", "reject"]
DueAction = Literal["none", "remind", "expire"]
Mention = Callable[[str], str]

_MODES: Final[tuple[Mode, ...]] = ("quorum", "auto_approve", "blocked")

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

MIN_BREAK_GLASS_REASON: Final = 10  # characters, after stripping spaces


def _plain(principal: str) -> str:
    return principal


# --------------------------------------------------------------------------------------------
# What a gate requires
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """`count` distinct people from `approvers` (user ids and user-group ids)."""

    approvers: tuple[str, ...]
    count: int

    def __post_init__(self) -> None:
        if not self.approvers:
            raise ValueError("a rule needs at least one approver")
        if self.count < 1:
            raise ValueError(f"a rule needs a count >= 1, not {self.count}")

    def label(self, mention: Mention = _plain) -> str:
        """`"S0RELMGRS"`, or `"S0RELMGRS or U0ALICE01"` for several principals."""
        return _join([mention(p) for p in dict.fromkeys(self.approvers)], "or")


@dataclass(frozen=True)
class Requirement:
    """What one gate needs, fixed when the gate opens (stored with it, see `to_dict`).

    `mode` "quorum": every rule met by distinct people. "auto_approve": nothing to wait for.
    "blocked": only break-glass passes. `risk_level` is the level that chose the mode, if any.
    """

    mode: Mode
    rules: tuple[Rule, ...]
    risk_level: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"gate mode must be one of {', '.join(_MODES)}, not {self.mode!r}")
        if self.mode == "quorum" and not self.rules:
            raise ValueError("a quorum needs at least one rule")

    @property
    def seats(self) -> int:
        """How many approvals a quorum needs (0 in the other modes)."""
        return sum(rule.count for rule in self.rules) if self.mode == "quorum" else 0

    def principals(self) -> tuple[str, ...]:
        """Every approver principal of every rule, once each, in rule order."""
        return tuple(dict.fromkeys(p for rule in self.rules for p in rule.approvers))

    def describe(self, mention: Mention = _plain) -> str:
        """`"1 from S0RELMGRS and 1 from S0SREGRPS (distinct people)"`, `"approved
        automatically (low risk)"`, `"blocked (critical risk): only break-glass can pass"`."""
        why = f" ({self.risk_level} risk)" if self.risk_level else ""
        if self.mode == "auto_approve":
            return f"approved automatically{why}"
        if self.mode == "blocked":
            return f"blocked{why}: only break-glass can pass"
        parts = [f"{rule.count} from {rule.label(mention)}" for rule in self.rules]
        distinct = " (distinct people)" if self.seats > 1 else ""
        return _join(parts) + distinct

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"mode", "rules": [{"approvers": [...], "count"}], "risk_level"}`."""
        return {
            "mode": self.mode,
            "rules": [{"approvers": list(r.approvers), "count": r.count} for r in self.rules],
            "risk_level": self.risk_level,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        """The inverse of `to_dict`; raises ValueError on anything it would not have written."""
        mode = data.get("mode")
        if mode not in _MODES:
            raise ValueError(f"gate mode must be one of {', '.join(_MODES)}, not {mode!r}")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list | tuple):
            raise ValueError("gate rules must be a list")
        rules: list[Rule] = []
        for raw in raw_rules:
            if not isinstance(raw, Mapping):
                raise ValueError(f"a gate rule must be a mapping, not {raw!r}")
            approvers, count = raw.get("approvers"), raw.get("count")
            if not isinstance(approvers, list | tuple) or not all(
                isinstance(p, str) and p for p in approvers
            ):
                raise ValueError(f"a gate rule needs a list of approver ids: {dict(raw)!r}")
            if not isinstance(count, int) or isinstance(count, bool):
                raise ValueError(f"a gate rule needs a whole-number count: {dict(raw)!r}")
            rules.append(Rule(approvers=tuple(approvers), count=count))
        level = data.get("risk_level")
        if level is not None and not isinstance(level, str):
            raise ValueError(f"risk_level must be a string or null, not {level!r}")
        return cls(mode=_mode(mode), rules=tuple(rules), risk_level=level)


def _mode(value: object) -> Mode:
    if value == "auto_approve":
        return "auto_approve"
    if value == "blocked":
        return "blocked"
    return "quorum"


def requirement_for(gate: Gate, risk_level: str | None) -> Requirement:
    """The gate's requirement at this risk level: `by_risk[level]` when set, else `require`.

    An entry of `by_risk` that sets nothing (all defaults) changes nothing.
    """
    base = tuple(Rule(approvers=tuple(r.approvers), count=r.count) for r in gate.require)
    override = next((rg for level, rg in gate.by_risk.items() if level == risk_level), None)
    if override is not None:
        if override.auto_approve:
            return Requirement(mode="auto_approve", rules=base, risk_level=risk_level)
        if override.blocked:
            return Requirement(mode="blocked", rules=base, risk_level=risk_level)
        if override.require is not None:
            stricter = tuple(
                Rule(approvers=tuple(r.approvers), count=r.count) for r in override.require
            )
            return Requirement(mode="quorum", rules=stricter, risk_level=risk_level)
    return Requirement(mode="quorum", rules=base, risk_level=risk_level)


# --------------------------------------------------------------------------------------------
# Membership
# --------------------------------------------------------------------------------------------


def principals_of(user_id: str, memberships: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """Everything this user counts as: their own id plus whatever `memberships` lists."""
    return memberships.get(user_id, frozenset()) | {user_id}


def belongs_to(rule: Rule, user_id: str, memberships: Mapping[str, frozenset[str]]) -> bool:
    """The user is listed in the rule or is a member of a group it lists."""
    return _matched_principal(rule, principals_of(user_id, memberships)) is not None


def _matched_principal(rule: Rule, principals: frozenset[str]) -> str | None:
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

    def describe(self, mention: Mention = _plain) -> str:
        """One line for the release message.

        `"1 of 2 approvals: waiting for 1 more from S0SREGRPS"`,
        `"approved by U1 (S0RELMGRS) and U2 (S0SREGRPS)"`. `mention` renders an id (for
        Slack, `<@U1>` or `<!subteam^S0RELMGRS>`); by default ids are shown as they are.
        """
        mode, why = self.requirement.mode, self.requirement.risk_level
        if mode == "auto_approve":
            return "no approval needed" + (f" ({why} risk)" if why else "")
        if mode == "blocked":
            prefix = f"{why} risk: " if why else ""
            return f"{prefix}blocked, only break-glass can pass this gate"
        if self.met:
            names = []
            for user in self.assignment:
                principal = self.matched_as.get(user, user)
                suffix = "" if principal == user else f" ({mention(principal)})"
                names.append(f"{mention(user)}{suffix}")
            return f"approved by {_join(names)}"
        more = " more" if self.seats_filled else ""
        waiting = [
            f"{gap.still_needed}{more} from {_join([mention(p) for p in gap.approvers], 'or')}"
            for gap in self.missing
        ]
        return f"{self.seats_filled} of {self.seats_total} approvals: waiting for {_join(waiting)}"


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
            matched_as[person] = _matched_principal(rules[index], principals[position]) or person
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
        [i for i, rule in enumerate(rules) if _matched_principal(rule, mine) is not None]
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
    mention: Mention = _plain,
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
    labels = [_join([mention(p) for p in gap.approvers], "or") for gap in open_seats]
    seat = "seat is" if sum(gap.still_needed for gap in open_seats) == 1 else "seats are"
    return (
        f"your approval isn't needed: the {_join(labels)} {seat} still open "
        f"and you're not in {_join(labels, 'or')}"
    )


# --------------------------------------------------------------------------------------------
# Self-approval
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasePeople:
    """Everyone who had a hand in the release, as the code host and CI name them.

    `authors` and `committers` hold one entry per commit (a login, or "" when the host knows
    none), so "2 of the commits" can be counted. `author_emails` is one e-mail per commit
    too: when it lines up with `authors` (same length) a commit counts once if either its
    login or its e-mail is the person's; otherwise the two lists are counted apart and the
    larger count is used. `mergers` (one per merged change) and `deployers` are logins or
    names as the CI system reports them, or Slack user ids when the bot itself deployed.
    """

    authors: tuple[str, ...] = ()
    committers: tuple[str, ...] = ()
    mergers: tuple[str, ...] = ()
    deployers: tuple[str, ...] = ()
    author_emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Person:
    """A Slack user deciding on a gate: their id, the e-mail Slack reports (users.info), and
    their code-host identities from the config's `identities`, if listed."""

    user_id: str
    email: str | None = None
    identity: Identity | None = None

    @classmethod
    def from_config(
        cls, user_id: str, email: str | None, identities: Mapping[str, Identity]
    ) -> Person:
        return cls(user_id=user_id, email=email, identity=identities.get(user_id))

    def logins(self) -> frozenset[str]:
        """Names that are this person (case-folded): code-host logins and the Slack id."""
        names = [self.user_id]
        if self.identity is not None:
            names += [self.identity.github or "", self.identity.gitlab or ""]
        return frozenset(_fold(name) for name in names if name.strip())

    def emails(self) -> frozenset[str]:
        """This person's e-mail addresses (case-folded): Slack's and the identity's."""
        found = [self.email or ""]
        if self.identity is not None:
            found.append(self.identity.email or "")
        return frozenset(_fold(email) for email in found if email.strip())

    def is_login(self, name: str) -> bool:
        """A login or name from a code host or CI is this person (case-insensitive).

        CI systems sometimes name the actor by e-mail, so e-mails count here too.
        """
        folded = _fold(name)
        return bool(folded) and (folded in self.logins() or folded in self.emails())

    def is_email(self, email: str) -> bool:
        """An e-mail is this person's, including GitHub's noreply address for their login
        (`12345+octo-owner@users.noreply.github.com`)."""
        folded = _fold(email)
        if not folded:
            return False
        if folded in self.emails():
            return True
        local, _, domain = folded.partition("@")
        github = self.identity.github if self.identity is not None else None
        if domain == "users.noreply.github.com" and github:
            return local.rpartition("+")[2] == _fold(github)
        return False


def _fold(text: str) -> str:
    return text.strip().casefold()


def _authored(person: Person, people: ReleasePeople) -> int:
    logins = [person.is_login(name) for name in people.authors]
    emails = [person.is_email(email) for email in people.author_emails]
    if len(logins) == len(emails):
        return sum(a or b for a, b in zip(logins, emails, strict=True))
    return max(sum(logins), sum(emails))


def _of_the_commits(count: int) -> str:
    return f"{count} of the commits"


def self_approval_conflict(person: Person, people: ReleasePeople) -> str | None:
    """Why this person may not approve their own release, in plain English, or None.

    "you authored 2 of the commits", "you committed 1 of the commits", "you merged this
    change", "you started this deployment", combined as "you authored 2 of the commits and
    started this deployment".
    """
    reasons: list[str] = []
    authored = _authored(person, people)
    if authored:
        reasons.append(f"authored {_of_the_commits(authored)}")
    committed = sum(person.is_login(name) for name in people.committers)
    if committed:
        reasons.append(f"committed {_of_the_commits(committed)}")
    merged = sum(person.is_login(name) for name in people.mergers)
    if merged:
        many = len([name for name in people.mergers if name.strip()]) > 1
        reasons.append(f"merged {merged} of the changes" if many else "merged this change")
    if any(person.is_login(name) for name in people.deployers):
        reasons.append("started this deployment")
    return f"you {_join(reasons)}" if reasons else None


# --------------------------------------------------------------------------------------------
# Freezes, expiry, superseding
# --------------------------------------------------------------------------------------------


def active_freeze(freezes: Iterable[Freeze], environment: str, at: datetime) -> Freeze | None:
    """The first freeze (file order) covering the environment at this moment, or None.

    Check it when the decision is taken or the deploy would start, not when the pipeline did.
    """
    _require_aware(at, "at")
    return next((f for f in freezes if f.covers(environment) and f.active_at(at)), None)


@dataclass(frozen=True)
class GateTimes:
    """When a gate opened and how long it waits: reminded at `remind_at`, expired at
    `expires_at` (from that moment on; the gate is open during [created_at, expires_at))."""

    created_at: datetime
    expires_after: timedelta
    remind_after: timedelta | None = None

    @classmethod
    def from_gate(cls, gate: Gate, created_at: datetime) -> GateTimes:
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
    _require_aware(now, "now")
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
        and _fold(incoming.sha) != _fold(pending.sha)
    )


# --------------------------------------------------------------------------------------------
# Break-glass
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakGlassRequest:
    """Someone asks to pass a gate or a freeze in an emergency."""

    requested_by: str
    reason: str
    requested_at: datetime


def break_glass_check(
    settings: BreakGlass | None,
    request: BreakGlassRequest,
    confirmer_id: str,
    memberships: Mapping[str, frozenset[str]],
    now: datetime,
    mention: Mention = _plain,
) -> str | None:
    """Why this confirmation of a break-glass request is refused, or None to let it through.

    Needs the `break_glass` section, a reason of at least `MIN_BREAK_GLASS_REASON`
    characters and a confirmer from `break_glass.approvers`; with `second_person` the
    confirmer must be someone other than the requester (without it the requester confirms
    their own request, and must be an approver). A request left unconfirmed for longer than
    `valid_for` lapses.
    """
    _require_aware(now, "now")
    if settings is None:
        return "break-glass is not configured (no break_glass section in releasebot.yaml)"
    if len(request.reason.strip()) < MIN_BREAK_GLASS_REASON:
        return (
            f"break-glass needs a reason of at least {MIN_BREAK_GLASS_REASON} characters "
            "saying what is on fire"
        )
    if now >= request.requested_at + settings.valid_for:
        return "this break-glass request lapsed before anyone confirmed it; ask again"
    if settings.second_person and confirmer_id == request.requested_by:
        return "break-glass needs a second person: someone else must confirm your request"
    rule = Rule(approvers=tuple(settings.approvers), count=1)
    if not belongs_to(rule, confirmer_id, memberships):
        return f"only {rule.label(mention)} can confirm break-glass"
    return None


def break_glass_valid_until(settings: BreakGlass, confirmed_at: datetime) -> datetime:
    """A confirmed break-glass holds until this moment (exclusive)."""
    _require_aware(confirmed_at, "confirmed_at")
    return confirmed_at + settings.valid_for


# --------------------------------------------------------------------------------------------
# One answer before recording a decision
# --------------------------------------------------------------------------------------------


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
    freezes: Iterable[Freeze],
    at: datetime,
    break_glass_active: bool = False,
    mention: Mention = _plain,
) -> str | None:
    """Why this person may not record this decision on the gate now, or None.

    Checked in order, the first that applies answers:
    1. the gate is no longer pending ("this gate was already approved");
    2. the person belongs to no rule ("you are not in S0RELMGRS or S0SREGRPS");
    3. approvals only, with `forbid_self_approval`: "you authored 2 of the commits";
    4. they already approved (`approvals`: user ids): "you already approved this release";
    5. approvals only, a freeze covers `environment` at `at` (unless a confirmed break-glass
       is active): "production is frozen: Year-end change freeze; use break-glass";
    6. approvals only, a blocked gate: "critical risk: only break-glass can pass this gate".

    Rejecting is allowed to any approver who has not voted yet, during a freeze, on a blocked
    gate and on their own change (stopping a release is always safe).
    """
    _require_aware(at, "at")
    closed = closed_refusal(gate_status)
    if closed is not None:
        return closed
    if not can_fill_a_seat(requirement, person.user_id, memberships):
        return _not_an_approver(requirement, mention)
    approving = decision == "approve"
    if approving and forbid_self_approval:
        conflict = self_approval_conflict(person, people)
        if conflict is not None:
            return conflict
    if person.user_id in approvals:
        return "you already approved this release"
    if approving and not break_glass_active:
        freeze = active_freeze(freezes, environment, at)
        if freeze is not None:
            return f"{environment} is frozen: {freeze.reason}; use break-glass"
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
    names = _join([mention(p) for p in principals], "or")
    if principals and all(p.startswith("S") for p in principals):
        return f"you are not in {names}"
    return f"only {names} can decide on this gate" if principals else "this gate has no approvers"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _join(items: Sequence[str], conjunction: str = "and") -> str:
    """`["a"]` -> "a", `["a", "b"]` -> "a and b", `["a", "b", "c"]` -> "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {moment.isoformat()}")
