"""What a deploy gate (`gate`) and a flag step's gate (`flag_step`) do alike to their rows:
a decision recorded on the row (status, when, by whom, why), a reminder sent (when it
went out, when the next one is due, audited with the approvers it mentioned), and an
escalation (once per row: a thread line, a direct message to each approver asked, audited).

Each caller locks its row first (by its row version) and audits the decision itself, with
the subject and details of its kind.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session, col, select

from bot.domain.gates.timing import next_reminder
from bot.domain.messages import DirectMessage, OncallLine, TemplateLine
from bot.services import audit, outbox
from bot.store.tables import AuditEvent

REASON_KEPT = 3000


class Decided(Protocol):
    """A row whose gate is decided: a deploy gate or a flag step."""

    status: str
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


class Reminded(Protocol):
    """A row whose approvers are reminded until it expires."""

    remind_at: datetime | None
    reminded_at: datetime | None
    expires_at: datetime | None


def record_decision(
    session: Session, row: Decided, *, now: datetime, status: str, actor: str, reason: str
) -> None:
    """The decision on the locked row: its status, when, by whom, and why (the reason is
    kept to its first 3000 characters; an empty one is stored as none)."""
    row.status = status
    row.decided_at = now
    row.decided_by = actor
    row.reason = reason[:REASON_KEPT] or None
    session.add(row)
    session.flush()


def reminder_sent(
    session: Session, row: Reminded, *, now: datetime, every: timedelta | None
) -> datetime | None:
    """A reminder of the locked row goes out now: the next one, when `every` repeats it, is
    scheduled (never at or after expiry). Answers when the next one is due, or None."""
    assert row.remind_at is not None and row.expires_at is not None
    following = next_reminder(row.remind_at, every, now, row.expires_at)
    row.reminded_at = now
    if following is not None:
        row.remind_at = following
    session.add(row)
    session.flush()
    return following


def audit_reminder(
    session: Session,
    *,
    now: datetime,
    action: str,
    subject: str,
    details: dict[str, object],
    following: datetime | None,
) -> None:
    """The reminder in the audit trail, by releasebot, with when the next one is due."""
    if following is not None:
        details["next_reminder"] = following.isoformat()
    audit.append(
        session, at=now, actor="releasebot", action=action, subject=subject, details=details
    )


def escalated(session: Session, *, subject: str, action: str) -> bool:
    """Whether the row (`gate:<id>`, `flag_step:<id>`) has escalated already."""
    done = session.exec(
        select(AuditEvent.seq)
        .where(col(AuditEvent.subject) == subject)
        .where(col(AuditEvent.action) == action)
        .limit(1)
    ).first()
    return done is not None


def queue_escalation(
    session: Session,
    *,
    now: datetime,
    line: tuple[int, str, dict[str, Any]],
    mentioning: str,
    on_call: bool,
    asked: list[str],
    asking: str,
    action: str,
    subject: str,
    details: dict[str, object],
) -> None:
    """The escalation's thread line (deployment id, template, fields; the field
    `mentioning` names whom it mentions), the direct message `asking` to each approver
    `asked`, and the audit record (`action` on `subject`, with whom it asked) that marks it
    done. `on_call`: without an `escalate_to` of its own, the line mentions whoever is on
    call for the service when it is sent (PagerDuty), the field's group as the fallback."""
    deployment_id, template, fields = line
    outbox.enqueue(
        session,
        OncallLine(deployment_id, template, {**fields, "oncall_field": mentioning})
        if on_call
        else TemplateLine(deployment_id, template, fields),
        now=now,
    )
    for user in asked:
        outbox.enqueue(session, DirectMessage(user, asking), now=now)
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action=action,
        subject=subject,
        details={**details, "asked": asked},
    )
