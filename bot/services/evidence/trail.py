"""The trail sections of the evidence pack: the release's audit records, the delivery
receipts of its side effects, what happened afterwards (rollback, the restored version's
redeploy, the incident), and the stretch of the audit chain that covers all of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlmodel import Session, col, select

from bot.domain import states
from bot.services import audit, checkpoints
from bot.services.evidence.sections import details, iso
from bot.services.receipts import subject_for
from bot.store.tables import AuditEvent, CheckRun, Deployment

INCIDENT_ACTIONS = ("incident.opened", "incident.resolved")


def records_of(session: Session, subjects: list[str]) -> list[dict[str, Any]]:
    """The audit records of these subjects, in chain order, as exported."""
    if not subjects:
        return []
    events = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.subject).in_(subjects))
        .order_by(col(AuditEvent.seq))
    ).all()
    return [
        {
            "seq": event.seq,
            "at": event.at,
            "actor": event.actor,
            "action": event.action,
            "subject": event.subject,
            "details": details(event.details),
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
        for event in events
    ]


def receipts(session: Session, deployment_ids: Iterable[int]) -> list[dict[str, Any]]:
    """What each platform answered when the release's side effects were sent (see
    `bot/services/receipts.py`): one entry per sent outbox row, with its audit record."""
    subjects = {subject_for(i, 0): i for i in deployment_ids}
    found = []
    for record in records_of(session, list(subjects)):
        body = record["details"] if isinstance(record["details"], Mapping) else {}
        found.append(
            {
                "seq": record["seq"],
                "at": record["at"],
                "hash": record["hash"],
                "deployment_id": subjects[record["subject"]],
                "kind": body.get("kind"),
                "outbox_id": body.get("outbox_id"),
                "attempt": body.get("attempt"),
                "receipts": list(body.get("receipts") or []),
            }
        )
    return found


def aftermath(session: Session, deployments: list[Deployment]) -> list[dict[str, Any]]:
    """For every deployment of the release that was rolled back: the version it rolled back
    to, each redeploy of that version (in whichever release it sits) with its verification,
    records and receipts, and the incident opened and resolved for it."""
    found = []
    for deployment in deployments:
        if deployment.rollback_to is None or deployment.id is None:
            continue
        restoring = session.exec(
            select(Deployment)
            .where(Deployment.service == deployment.service)
            .where(Deployment.environment == deployment.environment)
            .where(Deployment.sha == deployment.rollback_to)
            .where(col(Deployment.created_at) >= deployment.created_at)
            .where(col(Deployment.id) != deployment.id)
            .order_by(col(Deployment.created_at), col(Deployment.id))
        ).all()
        incident = records_of(session, [f"deployment:{deployment.id}"])
        found.append(
            {
                "deployment_id": deployment.id,
                "state": deployment.state,
                "rolled_back": deployment.state == states.ROLLED_BACK,
                "rollback_to": deployment.rollback_to,
                "redeploys": [_redeploy(session, d) for d in restoring],
                "incident": [r for r in incident if r["action"] in INCIDENT_ACTIONS],
            }
        )
    return found


def _redeploy(session: Session, deployment: Deployment) -> dict[str, Any]:
    assert deployment.id is not None
    runs = session.exec(
        select(CheckRun)
        .where(CheckRun.deployment_id == deployment.id)
        .order_by(col(CheckRun.due_at), col(CheckRun.id))
    ).all()
    return {
        "deployment_id": deployment.id,
        "release_id": deployment.release_id,
        "sha": deployment.sha,
        "state": deployment.state,
        "verified": deployment.state == states.VERIFIED,
        "created_at": iso(deployment.created_at),
        "deployed_at": iso(deployment.deployed_at),
        "finished_at": iso(deployment.finished_at),
        "checks": [
            {"check_id": r.check_id, "status": r.status, "finished_at": iso(r.finished_at)}
            for r in runs
        ],
        "records": records_of(session, [f"deployment:{deployment.id}"]),
        "receipts": receipts(session, [deployment.id]),
    }


def stretch(session: Session, seqs: Iterable[int]) -> dict[str, Any] | None:
    """The part of the chain from the release's first record to its last: each end's
    sequence and hash (and the hash the first links to), and how many records lie between.
    Verifying the chain over this stretch proves none of the release's records changed;
    `checkpoint` is the first checkpoint published outside the database at or after its
    last record (None until one is)."""
    numbers = sorted(set(seqs))
    if not numbers:
        return None
    first = session.get(AuditEvent, numbers[0])
    last = session.get(AuditEvent, numbers[-1])
    if first is None or last is None:
        return None
    return {
        "first_seq": first.seq,
        "first_prev_hash": first.prev_hash,
        "first_hash": first.hash,
        "last_seq": last.seq,
        "last_hash": last.hash,
        "records": last.seq - first.seq + 1,
        "release_records": len(numbers),
        # The checkpoint published outside the database that covers the stretch's last
        # record: `audit verify --checkpoints` against that file proves the stretch.
        "checkpoint": checkpoints.covering(session, last.seq),
    }


def chain(session: Session) -> dict[str, Any]:
    """Whether the whole audit chain verifies, where it first breaks, and its head."""
    checked, broken = audit.verify_chain(session)
    head = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    return {
        "verified": broken is None,
        "first_break": broken.seq if broken is not None else None,
        "first_break_reason": broken.reason if broken is not None else None,
        "records_checked": checked,
        "head_seq": head.seq if head is not None else None,
        "head_hash": head.hash if head is not None else None,
    }
