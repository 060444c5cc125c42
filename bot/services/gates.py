"""Approval gates: opened when a pipeline waits, decided by people in Slack, settled once.

Every decision locks the gate row first (its row_version is bumped with a conditional
UPDATE), so double clicks, two approvers at the same instant, or an approval racing a
rejection or an expiry end in exactly one consistent outcome, decided by the database.
A decision the pipeline waits for is carried back by a deployer through the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config, Environment
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.errors import ConcurrentUpdate
from bot.domain.events import GateRequest
from bot.domain.messages import (
    Announcement,
    DeployerCall,
    PagerChange,
    ReleaseMessageUpdate,
    TemplateLine,
)
from bot.services import audit, freezes, outbox
from bot.services.transitions import transition
from bot.store import statements as sql
from bot.store.tables import Approval, Deployment, Gate, row_id

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


# --- reading ---------------------------------------------------------------------------------


def environment_of(config: Config, deployment: Deployment) -> Environment | None:
    return _environment(config, deployment.service, deployment.environment)


def _environment(config: Config, service: str, environment: str) -> Environment | None:
    found = config.services.get(service)
    return found.environment(environment) if found else None


def gate_principals(config: Config, service: str, environment: str) -> frozenset[str]:
    """Every user group a decision on this environment's gates may need resolving."""
    svc = config.services.get(service)
    env = svc.environment(environment) if svc else None
    found: set[str] = set()
    if env is not None and env.gate is not None:
        for rule in env.gate.require:
            found.update(rule.approvers)
        for risk_gate in env.gate.by_risk.values():
            for rule in risk_gate.require or ():
                found.update(rule.approvers)
    if config.break_glass is not None:
        found.update(config.break_glass.approvers)
    return frozenset(p for p in found if p.startswith("S"))


def memberships_from(
    group_members: Mapping[str, frozenset[str]], users: set[str]
) -> dict[str, frozenset[str]]:
    return {
        user: frozenset(g for g, members in group_members.items() if user in members)
        for user in users
    }


def release_people(session: Session, deployment: Deployment) -> rules.ReleasePeople:
    session.flush()  # what the ORM would flush before loading the release
    found = (
        session.connection()
        .execute(sql.RELEASE_COMMITS, {"release_id": deployment.release_id})
        .first()
    )
    commits = (found.commits or []) if found is not None else []
    return rules.ReleasePeople(
        authors=tuple(c.get("author_login") or "" for c in commits),
        committers=tuple(c.get("committer_login") or "" for c in commits),
        deployers=tuple(p for p in (deployment.deployer,) if p),
    )


def requirement(config: Config, deployment: Deployment) -> rules.Requirement | None:
    """What the gate needs now; None until the risk is known (the decision waits for it)."""
    env = environment_of(config, deployment)
    if env is None or env.gate is None:
        return None
    level = deployment.risk.get("level") if deployment.risk else None
    if level is None:
        return None
    return rules.requirement_for(env.gate, level)


def scope(session: Session, gate_id: int) -> tuple[str, str] | None:
    """(service, environment) of a gate."""
    session.flush()  # what the ORM would flush before loading the gate
    found = session.connection().execute(sql.GATE_SCOPE, {"gate_id": gate_id}).first()
    return (found.service, found.environment) if found is not None else None


# Loaded only when `sql.ANY_PENDING_GATE` found one.
_PENDING_GATE = (
    select(Gate)
    .where(col(Gate.deployment_id) == sa.bindparam("deployment_id"))
    .where(col(Gate.status) == rules.PENDING)
    .order_by(col(Gate.id).desc())
)


def pending_gate(session: Session, deployment_id: int) -> Gate | None:
    params = {"deployment_id": deployment_id}
    session.flush()  # what the ORM query would flush first (a gate added just now)
    if session.connection().execute(sql.ANY_PENDING_GATE, params).first() is None:
        return None
    return session.exec(_PENDING_GATE, params=params).first()


def latest_gate(session: Session, deployment_id: int) -> Gate | None:
    return session.exec(
        select(Gate).where(Gate.deployment_id == deployment_id).order_by(col(Gate.id).desc())
    ).first()


def approvers_of(session: Session, gate_id: int) -> list[str]:
    session.flush()  # what the ORM query would flush first (an approval added just now)
    return list(session.connection().execute(sql.GATE_APPROVERS, {"gate_id": gate_id}).scalars())


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

    With no gate configured for the environment, the pipeline is told to go ahead at once.
    """
    assert deployment.id is not None
    env = environment_of(config, deployment)
    if env is None or env.gate is None:
        if request.decide_via is not None:
            _call_deployer(
                session,
                now=now,
                deployment=deployment,
                kind=request.decide_via,
                action="approve",
                context=request.context,
                actor="releasebot",
                reason=f"no gate is configured for {deployment.environment}",
            )
        return None
    existing = pending_gate(session, deployment.id)
    if existing is not None:
        return existing
    _supersede_pending(session, now=now, config=config, newer=deployment)
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
    session.add(gate)
    session.flush()
    assert gate.id is not None
    audit.append(
        session,
        at=now,
        actor=requested_by or "releasebot",
        action="gate.opened",
        subject=f"gate:{gate.id}",
        details={
            "deployment": deployment.id,
            "sha": deployment.sha,
            "decide_via": request.decide_via,
            "expires_at": times.expires_at.isoformat(),
        },
    )
    if deployment.state == states.PENDING:
        transition(
            session,
            deployment=deployment,
            target=states.AWAITING_APPROVAL,
            now=now,
            actor="releasebot",
            source="gate",
            note=f"gate #{gate.id} waits for approval (expires {times.expires_at:%H:%M} UTC)",
        )
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
        _lock(session, gate)
        _close(
            session,
            now=now,
            gate=gate,
            deployment=deployment,
            status=rules.SUPERSEDED,
            actor="releasebot",
            reason=f"superseded by {newer.sha[:7]}",
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
    is locked first (`_lock`: its row_version bumped if still the one read).
    """
    session.flush()  # what the ORM would flush before its first statement here
    conn = session.connection()
    seen = conn.execute(sql.GATE_TO_DECIDE, {"gate_id": gate_id}).first()
    if seen is None:
        return Outcome(REFUSED, "this gate does not exist", gate_id)
    closed = rules.closed_refusal(seen.status)
    if closed is not None:
        # A decided, expired or superseded gate never opens again: refused without taking
        # the gate's lock, so a burst of late clicks does not contend for it.
        _refused(
            session, now=now, person=person, decision=decision, refusal=closed, gate_id=gate_id
        )
        return Outcome(REFUSED, closed, gate_id, seen.deployment_id)
    _bump(session, gate_id, seen.row_version)
    assert seen.found_deployment is not None
    env = _environment(config, seen.service, seen.environment)
    assert env is not None and env.gate is not None
    subject = f"gate:{gate_id}"
    # Loaded after the lock: the row as it is now (populate_existing in case this session
    # already held the gate, with the version before the bump).
    gate = session.get(Gate, gate_id, populate_existing=True)
    deployment = session.get(Deployment, seen.deployment_id)
    assert gate is not None and deployment is not None and deployment.id is not None
    votes = conn.execute(sql.GATE_VOTES, {"gate_id": gate_id}).all()
    approvers = [user for user, vote in votes if vote == "approve"]
    voted = {user for user, _ in votes}
    memberships = memberships_from(group_members, {*approvers, person.user_id})
    current = requirement(config, deployment) or rules.requirement_for(env.gate, None)
    refusal = rules.decision_refusal(
        decision="approve" if decision == "approve" else "reject",
        gate_status=gate.status,
        requirement=current,
        forbid_self_approval=env.gate.forbid_self_approval,
        person=person,
        people=release_people(session, deployment),
        approvals=sorted(voted),
        memberships=memberships,
        environment=deployment.environment,
        freezes=freezes.active(session, config=config, now=now),
        at=now,
    )
    if refusal is None and decision == "reject" and not (reason or "").strip():
        refusal = "a reason is required to reject a release"
    if refusal is not None:
        _refused(
            session, now=now, person=person, decision=decision, refusal=refusal, gate_id=gate_id
        )
        return Outcome(REFUSED, refusal, gate_id, deployment.id)
    session.add(
        Approval(
            gate_id=gate_id,
            user_id=person.user_id,
            decision=decision,
            reason=(reason or "").strip()[:3000] or None,
            created_at=now,
        )
    )
    session.flush()
    audit.append(
        session,
        at=now,
        actor=person.user_id,
        action=f"gate.{decision}_recorded",
        subject=subject,
        details={"reason": reason, "email": person.email},
    )
    if decision == "reject":
        _close(
            session,
            now=now,
            gate=gate,
            deployment=deployment,
            status=rules.REJECTED,
            actor=person.user_id,
            reason=(reason or "").strip(),
            target_state=states.REJECTED,
        )
        return Outcome(REJECTED, "you rejected this release", gate_id, deployment.id)
    result = settle(
        session,
        now=now,
        config=config,
        gate=gate,
        deployment=deployment,
        memberships=memberships,
        actor=person.user_id,
    )
    if result == APPROVED:
        return Outcome(APPROVED, "approved: the release goes ahead", gate_id, deployment.id)
    return Outcome(RECORDED, f"your approval is recorded: {gate.progress}", gate_id, deployment.id)


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
        details={"decision": decision, "reason": refusal},
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
    assert gate.id is not None
    current = requirement(config, deployment)
    if current is None:
        gate.progress = "waiting for the risk assessment before deciding"
        _refresh(session, now=now, deployment=deployment)
        return RECORDED
    approvers = approvers_of(session, gate.id)
    status = rules.evaluate(current, approvers, memberships)
    gate.requirement = current.to_dict()
    gate.progress = status.describe()  # ids as they are; templates turn them into mentions
    freeze = (
        rules.active_freeze(
            freezes.active(session, config=config, now=now), deployment.environment, now
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
        _close(
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
    _refresh(session, now=now, deployment=deployment)
    return RECORDED


def reassess(session: Session, *, now: datetime, config: Config, deployment: Deployment) -> None:
    """The risk is known now: a waiting gate may auto-approve or become blocked."""
    assert deployment.id is not None
    gate = pending_gate(session, deployment.id)
    if gate is None:
        return
    _lock(session, gate)
    settle(session, now=now, config=config, gate=gate, deployment=deployment, memberships={})


def _lock(session: Session, gate: Gate) -> None:
    """Bump the row version, or fail if someone else did first (the caller retries)."""
    updated = session.execute(
        sa.update(Gate)
        .where(col(Gate.id) == gate.id)
        .where(col(Gate.row_version) == gate.row_version)
        .values(row_version=gate.row_version + 1)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentUpdate(f"gate {gate.id} changed underneath")
    session.refresh(gate)


def _bump(session: Session, gate_id: int, seen_version: int) -> None:
    """`_lock` by id: bump the row version from the one read, or fail if someone else did
    first (the caller retries). The caller loads the gate afterwards, with the new version."""
    updated = session.connection().execute(
        sql.BUMP_GATE_VERSION,
        {"gate_id": gate_id, "seen_version": seen_version, "new_version": seen_version + 1},
    )
    if updated.rowcount != 1:
        raise ConcurrentUpdate(f"gate {gate_id} changed underneath")


def _close(
    session: Session,
    *,
    now: datetime,
    gate: Gate,
    deployment: Deployment,
    status: str,
    actor: str,
    reason: str,
    target_state: str,
) -> None:
    gate.status = status
    gate.decided_at = now
    gate.decided_by = actor
    gate.reason = reason[:3000] or None
    session.add(gate)
    session.flush()
    audit.append(
        session,
        at=now,
        actor=actor,
        action=f"gate.{status}",
        subject=f"gate:{gate.id}",
        details={"deployment": deployment.id, "reason": reason, "requirement": gate.requirement},
    )
    if target_state in states.LEGAL_MOVES.get(deployment.state, frozenset()):
        transition(
            session,
            deployment=deployment,
            target=target_state,
            now=now,
            actor=actor,
            source="gate",
            note=reason,
        )
    action = "approve" if status == rules.APPROVED else "reject"
    if gate.decide_via is not None:
        on_approve = str(gate.context.get("on_approve", "approve"))
        if action == "approve" or not gate.context.get("on_approve"):
            _call_deployer(
                session,
                now=now,
                deployment=deployment,
                kind=gate.decide_via,
                action=on_approve if action == "approve" else "reject",
                context=gate.context,
                actor=actor,
                reason=reason,
            )


def _refresh(session: Session, *, now: datetime, deployment: Deployment) -> None:
    outbox.enqueue(session, ReleaseMessageUpdate(row_id(deployment)), now=now)


def _call_deployer(
    session: Session,
    *,
    now: datetime,
    deployment: Deployment,
    kind: str,
    action: str,
    context: Mapping[str, Any],
    actor: str,
    reason: str | None,
) -> None:
    call = DeployerCall(
        deployment_id=row_id(deployment),
        kind=kind,
        action=action,
        request_id=f"rb-{deployment.id}-{action}-{uuid.uuid4().hex[:8]}",
        context=dict(context),
        actor=actor,
        reason=reason,
    )
    outbox.enqueue(session, call, now=now)


# --- time ------------------------------------------------------------------------------------


def sweep(session: Session, *, now: datetime, config: Config) -> int:
    """Remind the approvers of gates waiting long, expire the ones past their time."""
    acted = 0
    for gate in session.exec(select(Gate).where(Gate.status == rules.PENDING)).all():
        deployment = session.get(Deployment, gate.deployment_id)
        if deployment is None or gate.expires_at is None:
            continue
        if now >= gate.expires_at:
            _lock(session, gate)
            _close(
                session,
                now=now,
                gate=gate,
                deployment=deployment,
                status=rules.EXPIRED,
                actor="releasebot",
                reason="nobody decided in time",
                target_state=states.EXPIRED,
            )
            acted += 1
        elif gate.remind_at is not None and now >= gate.remind_at and gate.reminded_at is None:
            _lock(session, gate)
            gate.reminded_at = now
            session.add(gate)
            principals = (
                rules.Requirement.from_dict(gate.requirement).principals()
                if gate.requirement
                else ()
            )
            reminder = TemplateLine(
                row_id(deployment),
                "gate_reminder.txt.j2",
                {
                    "approvers": list(principals),
                    "expires_at": gate.expires_at.isoformat(),
                    "progress": gate.progress,
                },
            )
            outbox.enqueue(session, reminder, now=now)
            audit.append(
                session,
                at=now,
                actor="releasebot",
                action="gate.reminded",
                subject=f"gate:{gate.id}",
                details={"approvers": list(principals)},
            )
            acted += 1
    return acted


# --- break-glass -----------------------------------------------------------------------------


def request_break_glass(
    session: Session, *, now: datetime, config: Config, gate_id: int, user_id: str, reason: str
) -> Outcome:
    """Someone asks to pass a gate in an emergency; a second person has to confirm."""
    gate = session.get(Gate, gate_id)
    if gate is None:
        return Outcome(REFUSED, "this gate does not exist", gate_id)
    _lock(session, gate)
    refusal = None
    if config.break_glass is None:
        refusal = "break-glass is not configured (no break_glass section in releasebot.yaml)"
    elif gate.status != rules.PENDING:
        refusal = f"this gate is already {gate.status}"
    elif len(reason.strip()) < rules.MIN_BREAK_GLASS_REASON:
        refusal = (
            f"break-glass needs a reason of at least {rules.MIN_BREAK_GLASS_REASON} characters "
            "saying what is on fire"
        )
    if refusal is not None:
        audit.append(
            session,
            at=now,
            actor=user_id,
            action="gate.break_glass_refused",
            subject=f"gate:{gate_id}",
            details={"reason": refusal},
        )
        return Outcome(REFUSED, refusal, gate_id, gate.deployment_id)
    assert config.break_glass is not None
    gate.break_glass = {
        "requested_by": user_id,
        "reason": reason.strip()[:2000],
        "requested_at": now.isoformat(),
    }
    session.add(gate)
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="gate.break_glass_requested",
        subject=f"gate:{gate_id}",
        details={"reason": reason.strip()},
    )
    deployment = session.get(Deployment, gate.deployment_id)
    assert deployment is not None
    _announce(
        session,
        now=now,
        deployment=deployment,
        payload={
            "template": "break_glass.txt.j2",
            "stage": "requested",
            "by": user_id,
            "reason": reason.strip()[:2000],
            "approvers": list(config.break_glass.approvers),
        },
    )
    _refresh(session, now=now, deployment=deployment)
    who = " or ".join(config.break_glass.approvers)
    return Outcome(
        RECORDED, f"break-glass requested: someone from {who} must confirm", gate_id, deployment.id
    )


def confirm_break_glass(
    session: Session,
    *,
    now: datetime,
    config: Config,
    gate_id: int,
    user_id: str,
    group_members: Mapping[str, frozenset[str]],
) -> Outcome:
    gate = session.get(Gate, gate_id)
    if gate is None:
        return Outcome(REFUSED, "this gate does not exist", gate_id)
    _lock(session, gate)
    asked = gate.break_glass or {}
    refusal: str | None
    if gate.status != rules.PENDING:
        refusal = f"this gate is already {gate.status}"
    elif not asked.get("requested_by"):
        refusal = "nobody has asked for break-glass on this gate"
    elif asked.get("confirmed_by"):
        refusal = "this break-glass was already confirmed"
    else:
        request = rules.BreakGlassRequest(
            requested_by=str(asked["requested_by"]),
            reason=str(asked["reason"]),
            requested_at=datetime.fromisoformat(str(asked["requested_at"])),
        )
        refusal = rules.break_glass_check(
            config.break_glass, request, user_id, memberships_from(group_members, {user_id}), now
        )
    if refusal is not None:
        audit.append(
            session,
            at=now,
            actor=user_id,
            action="gate.break_glass_refused",
            subject=f"gate:{gate_id}",
            details={"reason": refusal},
        )
        return Outcome(REFUSED, refusal, gate_id, gate.deployment_id)
    assert config.break_glass is not None
    valid_until = rules.break_glass_valid_until(config.break_glass, now)
    gate.break_glass = {
        **asked,
        "confirmed_by": user_id,
        "confirmed_at": now.isoformat(),
        "valid_until": valid_until.isoformat(),
    }
    deployment = session.get(Deployment, gate.deployment_id)
    assert deployment is not None
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="gate.break_glass_confirmed",
        subject=f"gate:{gate_id}",
        details=dict(gate.break_glass),
    )
    _close(
        session,
        now=now,
        gate=gate,
        deployment=deployment,
        status=rules.APPROVED,
        actor=user_id,
        reason=f"break-glass: asked by {asked['requested_by']}, confirmed by {user_id}: "
        f"{asked['reason']}",
        target_state=states.APPROVED,
    )
    _announce(
        session,
        now=now,
        deployment=deployment,
        payload={
            "template": "break_glass.txt.j2",
            "stage": "confirmed",
            "by": asked["requested_by"],
            "confirmed_by": user_id,
            "reason": asked["reason"],
            "valid_until": valid_until.isoformat(),
        },
    )
    change = PagerChange(
        row_id(deployment),
        "break-glass",
        f"Break-glass on {deployment.service} {deployment.environment}: {asked['reason']}"[:1000],
    )
    outbox.enqueue(session, change, now=now)
    return Outcome(
        APPROVED, "break-glass confirmed: the release goes ahead", gate_id, deployment.id
    )


def _announce(
    session: Session, *, now: datetime, deployment: Deployment, payload: dict[str, Any]
) -> None:
    """A line for the whole channel, not only the thread (break-glass is loud on purpose)."""
    fields = {k: v for k, v in payload.items() if k != "template"}
    announcement = Announcement(row_id(deployment), str(payload["template"]), fields)
    outbox.enqueue(session, announcement, now=now)
