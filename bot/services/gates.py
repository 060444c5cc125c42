"""Approval gates: opened when a pipeline waits, decided by people in Slack, settled once.

Every decision locks the gate row first (its row_version is bumped with a conditional
UPDATE), so double clicks, two approvers at the same instant, or an approval racing a
rejection or an expiry end in exactly one consistent outcome, decided by the database.
A decision the pipeline waits for is carried back by a deployer through the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from bot.config import Config, GatePolicy
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.config_hash import config_sha256
from bot.domain.events import GateRequest
from bot.domain.gates import refusal as refusals
from bot.domain.ingest import revision_label
from bot.services import audit, freeze_gates, freezes, gate_reads, outbox, slo
from bot.services.gate_close import (
    bump_version,
    close_gate,
    lock_gate,
    record_opened,
    refresh_message,
)
from bot.services.gate_reads import (
    approvers_of as approvers_of,
)
from bot.services.gate_reads import (
    environment_at as environment_at,
)
from bot.services.gate_reads import (
    environment_of as environment_of,
)
from bot.services.gate_reads import (
    gate_principals as gate_principals,
)
from bot.services.gate_reads import (
    latest_gate as latest_gate,
)
from bot.services.gate_reads import (
    memberships_from as memberships_from,
)
from bot.services.gate_reads import (
    pending_gate as pending_gate,
)
from bot.services.gate_reads import (
    release_people as release_people,
)
from bot.services.gate_reads import (
    requirement as requirement,
)
from bot.services.gate_reads import (
    scope as scope,
)
from bot.services.transitions import lock_environment
from bot.store import statements as sql
from bot.store.tables import Approval, Deployment, Gate

DEPLOY = outbox.DEPLOY

APPROVED = "approved"
REJECTED = "rejected"
RECORDED = "recorded"
REFUSED = "refused"


@dataclass(frozen=True)
class Outcome:
    result: str  # approved | rejected | recorded | refused
    message: str  # what to tell the person who clicked
    gate_id: int | None = None
    deployment_id: int | None = None


# --- opening ---------------------------------------------------------------------------------


def open_gate(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment: Deployment,
    request: GateRequest,
    requested_by: str | None,
) -> Gate | None:
    """The pipeline waits: open (or find) the gate of this deployment.

    With no gate configured for the environment, the pipeline is told to go ahead at once,
    unless a freeze holds the environment: then a gate opens that only break-glass or the
    end of the freeze lets through (`freeze_gates`).
    """
    assert deployment.id is not None
    env = environment_of(config, deployment)
    hold = freeze_gates.ungated_hold(session, now=now, config=config, deployment=deployment)
    if (env is None or env.gate is None) and hold is None:
        freeze_gates.go_ahead(session, now=now, deployment=deployment, request=request)
        return None
    lock_environment(session, service=deployment.service, environment=deployment.environment)
    existing = pending_gate(session, deployment.id)
    if existing is not None:
        return existing
    _supersede_pending(session, now=now, config=config, newer=deployment)
    if hold is not None:
        return freeze_gates.open_held(session, deployment, request, requested_by, hold, now)
    assert env is not None and env.gate is not None
    times = rules.GateTimes.from_gate(env.gate, now)
    gate = Gate(
        deployment_id=deployment.id,
        sha=deployment.sha,
        status=rules.PENDING,
        requirement={},
        decide_via=request.decide_via,
        context=dict(request.context),
        requested_by=requested_by,
        created_at=now,
        expires_at=times.expires_at,
        remind_at=times.remind_at,
    )
    record_opened(
        session,
        now=now,
        gate=gate,
        deployment=deployment,
        requested_by=requested_by,
        details={
            "expires_at": times.expires_at.isoformat(),
            "config_sha256": config_sha256(config),
        },
        waits=f" waits for approval (expires {times.expires_at:%H:%M} UTC)",
    )
    if slo.has_slo(config, deployment.service):
        slo.request(session, now=now, service=deployment.service)
    settle(session, now=now, config=config, gate=gate, deployment=deployment, memberships={})
    return gate


def _supersede_pending(
    session: Session, *, now: datetime, config: Config, newer: Deployment
) -> None:
    older = session.exec(
        select(Gate, Deployment)
        .join(Deployment, col(Deployment.id) == col(Gate.deployment_id))
        .where(Gate.status == rules.PENDING)
        .where(Deployment.service == newer.service)
        .where(Deployment.environment == newer.environment)
        .where(Deployment.sha != newer.sha)
    ).all()
    for gate, deployment in older:
        lock_gate(session, gate)
        close_gate(
            session,
            now=now,
            gate=gate,
            deployment=deployment,
            status=rules.SUPERSEDED,
            actor="releasebot",
            reason=f"superseded by {revision_label(newer.sha, newer.version)}",
            target_state=states.SUPERSEDED,
        )


# --- deciding --------------------------------------------------------------------------------


def decide(
    session: Session,
    *,
    now: datetime,
    config: Config,
    gate_id: int,
    person: rules.Person,
    group_members: Mapping[str, frozenset[str]],
    decision: str,
    reason: str | None = None,
) -> Outcome:
    """Record one person's approve or reject on a gate, or refuse it with the reason.

    A click on a gate that is no longer pending (most of a burst of clicks) is refused from
    the gate's row alone: such a gate never opens again, and nothing else a decision looks
    at can change that answer (`rules.decision_refusal`'s first check). Otherwise the gate
    is locked first (`lock_gate`: its row_version bumped if still the one read).
    """
    session.flush()  # what the ORM would flush before its first statement here
    seen = session.connection().execute(sql.GATE_TO_DECIDE, {"gate_id": gate_id}).first()
    if seen is None:
        return Outcome(REFUSED, refusals.unknown_gate().text, gate_id)
    closed = rules.closed_refusal(seen.status)
    if closed is not None:
        # A decided, expired or superseded gate never opens again: refused without taking
        # the gate's lock, so a burst of late clicks does not contend for it.
        _refused(
            session,
            now=now,
            person=person,
            decision=decision,
            refusal=closed.text,
            gate_id=gate_id,
        )
        return Outcome(REFUSED, closed.text, gate_id, seen.deployment_id)
    bump_version(session, gate_id, seen.row_version)
    assert seen.found_deployment is not None
    env = environment_at(config, seen.service, seen.environment)
    # Loaded after the lock: the row as it is now (populate_existing in case this session
    # already held the gate, with the version before the bump).
    gate = session.get(Gate, gate_id, populate_existing=True)
    deployment = session.get(Deployment, seen.deployment_id)
    assert gate is not None and deployment is not None and deployment.id is not None
    if env is None or env.gate is None:  # held by a freeze only: nobody decides on it
        held = freeze_gates.decision_refusal(session, now=now, config=config, deployment=deployment)
        _refused(session, now=now, person=person, decision=decision, refusal=held, gate_id=gate_id)
        return Outcome(REFUSED, held, gate_id, deployment.id)
    people = release_people(session, deployment)
    ballot = _Ballot(person, decision, reason, blind=_blind(env.gate, people, decision))
    memberships, refusal = _check(
        session,
        now=now,
        config=config,
        policy=env.gate,
        gate=gate,
        deployment=deployment,
        ballot=ballot,
        group_members=group_members,
        people=people,
    )
    if refusal is not None:
        _refused(
            session, now=now, person=person, decision=decision, refusal=refusal, gate_id=gate_id
        )
        return Outcome(REFUSED, refusal, gate_id, deployment.id)
    _record(session, now=now, gate_id=gate_id, ballot=ballot)
    return _conclude(
        session,
        now=now,
        config=config,
        gate=gate,
        deployment=deployment,
        ballot=ballot,
        memberships=memberships,
    )


@dataclass(frozen=True)
class _Ballot:
    """One person's approve or reject, with the reason they gave."""

    person: rules.Person
    decision: str  # approve | reject
    reason: str | None
    blind: str | None = None  # an approval without knowing who touched the change: why


def _blind(policy: GatePolicy, people: rules.ReleasePeople, decision: str) -> str | None:
    """What an approval says of itself when the gate lets it through though the people
    behind the release are unknown (`unknown_people: allow`), or None."""
    if decision != "approve" or not policy.forbid_self_approval:
        return None
    return rules.blind_note(people) if policy.unknown_people == "allow" else None


def _check(
    session: Session,
    *,
    now: datetime,
    config: Config,
    policy: GatePolicy,
    gate: Gate,
    deployment: Deployment,
    ballot: _Ballot,
    group_members: Mapping[str, frozenset[str]],
    people: rules.ReleasePeople,
) -> tuple[dict[str, frozenset[str]], str | None]:
    """The groups of the people involved, and why the ballot is refused (None: it counts)."""
    assert gate.id is not None
    votes = session.connection().execute(sql.GATE_VOTES, {"gate_id": gate.id}).all()
    approvers = [user for user, vote in votes if vote == "approve"]
    voted = {user for user, _ in votes}
    memberships = memberships_from(group_members, {*approvers, ballot.person.user_id})
    current = requirement(session, config, deployment) or rules.requirement_for(policy, None)
    refused = rules.decision_refusal(
        decision="approve" if ballot.decision == "approve" else "reject",
        gate_status=gate.status,
        requirement=current,
        forbid_self_approval=policy.forbid_self_approval,
        person=ballot.person,
        people=people,
        approvals=sorted(voted),
        memberships=memberships,
        environment=deployment.environment,
        freezes=freezes.active(session, config=config, now=now),
        at=now,
        break_glass_until=freeze_gates.window_of(
            session, now=now, config=config, deployment=deployment
        ),
        mention=rules.slack_mention,
        production=config.is_production(deployment.service, deployment.environment),
        allow_unknown_people=policy.unknown_people == "allow",
    )
    if refused is None and ballot.decision == "reject" and not (ballot.reason or "").strip():
        refused = refusals.reason_required("reject a release")
    return memberships, None if refused is None else refused.text


def _record(session: Session, *, now: datetime, gate_id: int, ballot: _Ballot) -> None:
    """The ballot as an Approval row, and in the audit trail."""
    session.add(
        Approval(
            gate_id=gate_id,
            user_id=ballot.person.user_id,
            decision=ballot.decision,
            reason=(ballot.reason or "").strip()[:3000] or None,
            created_at=now,
        )
    )
    session.flush()
    audit.append(
        session,
        at=now,
        actor=ballot.person.user_id,
        action=f"gate.{ballot.decision}_recorded",
        subject=f"gate:{gate_id}",
        details={
            "reason": ballot.reason,
            "email": ballot.person.email,
            **({"people_unknown": True, "blind": ballot.blind} if ballot.blind else {}),
        },
    )


def _conclude(
    session: Session,
    *,
    now: datetime,
    config: Config,
    gate: Gate,
    deployment: Deployment,
    ballot: _Ballot,
    memberships: dict[str, frozenset[str]],
) -> Outcome:
    """A reject closes the gate; an approval settles it when the requirement is met."""
    assert gate.id is not None
    if ballot.decision == "reject":
        close_gate(
            session,
            now=now,
            gate=gate,
            deployment=deployment,
            status=rules.REJECTED,
            actor=ballot.person.user_id,
            reason=(ballot.reason or "").strip(),
            target_state=states.REJECTED,
        )
        return Outcome(REJECTED, "you rejected this release", gate.id, deployment.id)
    result = settle(
        session,
        now=now,
        config=config,
        gate=gate,
        deployment=deployment,
        memberships=memberships,
        actor=ballot.person.user_id,
    )
    blind = f"; {ballot.blind}" if ballot.blind else ""
    if result == APPROVED:
        told = f"approved: the release goes ahead{blind}"
        return Outcome(APPROVED, told, gate.id, deployment.id)
    told = f"your approval is recorded: {gate.progress}{blind}"
    return Outcome(RECORDED, told, gate.id, deployment.id)


def _refused(
    session: Session,
    *,
    now: datetime,
    person: rules.Person,
    decision: str,
    refusal: str,
    gate_id: int,
) -> None:
    audit.append(
        session,
        at=now,
        actor=person.user_id,
        action="gate.decision_refused",
        subject=f"gate:{gate_id}",
        details={"decision": decision, "reason": refusal, "email": person.email},
    )


def settle(
    session: Session,
    *,
    now: datetime,
    config: Config,
    gate: Gate,
    deployment: Deployment,
    memberships: Mapping[str, frozenset[str]],
    actor: str = "releasebot",
) -> str:
    """Decide the gate if what it requires is now met; keep its progress line current."""
    if gate.status != rules.PENDING:
        return gate.status
    if freeze_gates.is_held(gate):
        return RECORDED  # no approval passes it: the freeze's end or break-glass does
    assert gate.id is not None
    current = requirement(session, config, deployment)
    if current is None:
        gate.progress = (
            "waiting for the risk assessment before deciding"
            if not (deployment.risk or {}).get("level")
            else "waiting for the error budget (asking Prometheus) before deciding"
        )
        refresh_message(session, now=now, deployment=deployment)
        return RECORDED
    approvers = approvers_of(session, gate.id)
    status = rules.evaluate(current, approvers, memberships)
    gate.requirement = current.to_dict()
    gate.progress = status.describe()  # ids as they are; templates turn them into mentions
    manual = gate_reads.not_automatic(config, deployment)
    if manual is not None and not status.met:
        gate.progress = f"{manual}; {gate.progress}"
    freeze = (
        rules.active_freeze(
            freezes.active(session, config=config, now=now),
            deployment.environment,
            now,
            production=config.is_production(deployment.service, deployment.environment),
        )
        if current.mode == "auto_approve"
        else None
    )
    if freeze is not None:
        # Nothing passes a freeze by itself: a person decides, with break-glass.
        gate.progress = (
            f"{deployment.environment} is frozen ({freeze.reason}): low risk is not approved "
            "automatically during a freeze; use break-glass"
        )
    elif status.met:
        reason = (
            f"{current.risk_level} risk: approved automatically"
            if current.mode == "auto_approve"
            else status.describe()
        )
        close_gate(
            session,
            now=now,
            gate=gate,
            deployment=deployment,
            status=rules.APPROVED,
            actor=actor if current.mode != "auto_approve" else "releasebot",
            reason=reason,
            target_state=states.APPROVED,
        )
        return APPROVED
    session.add(gate)
    refresh_message(session, now=now, deployment=deployment)
    return RECORDED


def reassess(session: Session, *, now: datetime, config: Config, deployment: Deployment) -> None:
    """The risk is known now: a waiting gate may auto-approve or become blocked."""
    assert deployment.id is not None
    gate = pending_gate(session, deployment.id)
    if gate is None:
        return
    lock_gate(session, gate)
    settle(session, now=now, config=config, gate=gate, deployment=deployment, memberships={})
