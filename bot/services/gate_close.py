"""Locking and closing a gate: the conditional row-version bump every decision takes
first, and the close that moves the deployment on and tells the waiting pipeline."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.domain import gates as rules
from bot.domain import states
from bot.domain.errors import ConcurrentUpdate
from bot.domain.gates.pipeline import (
    LEFT_WAITING_WHY,
    REJECTS_WHAT_WAITS,
    review_left_waiting_note,
)
from bot.domain.messages import DeployerCall, ReleaseMessageUpdate, TemplateLine
from bot.services import audit, checkpoints, gate_rows, outbox
from bot.services.transitions import transition
from bot.store import statements as sql
from bot.store.tables import Deployment, Gate, row_id


def lock_gate(session: Session, gate: Gate) -> None:
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


def bump_version(session: Session, gate_id: int, seen_version: int) -> None:
    """`lock_gate` by id: bump the row version from the one read, or fail if someone else did
    first (the caller retries). The caller loads the gate afterwards, with the new version."""
    updated = session.connection().execute(
        sql.BUMP_GATE_VERSION,
        {"gate_id": gate_id, "seen_version": seen_version, "new_version": seen_version + 1},
    )
    if updated.rowcount != 1:
        raise ConcurrentUpdate(f"gate {gate_id} changed underneath")


def close_gate(
    session: Session,
    *,
    now: datetime,
    gate: Gate,
    deployment: Deployment,
    status: str,
    actor: str,
    reason: str,
    target_state: str,
    tell_pipeline: bool = True,
) -> None:
    """Decide the gate (approved, rejected, expired), move the deployment on when it may,
    and carry the decision to the pipeline that waits for it (unless `tell_pipeline` is
    False: the pipeline took the decision itself). A promotion's gate rejected or expired
    starts nothing, but where the code host may hold a deployment of that commit waiting for
    this very decision (`REJECTS_WHAT_WAITS`), the rejection is carried to it too."""
    gate_rows.record_decision(session, gate, now=now, status=status, actor=actor, reason=reason)
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
    if gate.decide_via is not None and tell_pipeline:
        on_approve = str(gate.context.get("on_approve", "approve"))
        promotion = bool(gate.context.get("on_approve"))
        if action == "approve" or not promotion or gate.decide_via in REJECTS_WHAT_WAITS:
            call_deployer(
                session,
                now=now,
                deployment=deployment,
                kind=gate.decide_via,
                action=on_approve if action == "approve" else "reject",
                context=gate.context,
                actor=actor,
                reason=reason,
            )
    checkpoints.after_decision(session, now=now, deployment=deployment)


def review_left_waiting(
    session: Session,
    *,
    now: datetime,
    gate: Gate,
    deployment: Deployment,
    actor: str,
    host: str,
    reviewer: str,
    comment: str | None,
) -> None:
    """An approval on the code host that leaves the gate waiting (releasebot's own rule
    holds the job): audited with the reviewer and why, and told in the release's thread."""
    audit.append(
        session,
        at=now,
        actor=actor,
        action="gate.external_review_ignored",
        subject=f"gate:{gate.id}",
        details={
            "deployment": deployment.id,
            "review": "approved",
            "reviewer": reviewer,
            "host": host,
            "comment": comment,
            "why": LEFT_WAITING_WHY,
        },
    )
    note = review_left_waiting_note(host, reviewer, gate.progress)
    line = TemplateLine(row_id(deployment), "note.txt.j2", {"icon": ":eyes:", "text": note})
    outbox.enqueue(session, line, now=now)


def refresh_message(session: Session, *, now: datetime, deployment: Deployment) -> None:
    """Queue an edit of the deployment's release message to show what changed."""
    outbox.enqueue(session, ReleaseMessageUpdate(row_id(deployment)), now=now)


def call_deployer(
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
    """Queue a decision or an action for the deployer of the pipeline that waits for it."""
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


def record_opened(
    session: Session,
    *,
    now: datetime,
    gate: Gate,
    deployment: Deployment,
    requested_by: str | None,
    details: Mapping[str, Any],
    waits: str,
) -> None:
    """A new gate: stored (for its id), audited as opened, and a pending deployment moved to
    awaiting approval with `waits` saying what it waits for."""
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
            "decide_via": gate.decide_via,
            **details,
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
            note=f"gate #{gate.id}{waits}",
        )
