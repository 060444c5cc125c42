"""The alerts a failed verification opened, and closing them when the service recovers.

A failed verification opens an incident (`incident.opened`, a trigger for the pagers,
deduplicated on `incident_key`). It is resolved as soon as any *later* deployment of the
same service in the same environment passes verification: the version its rollback
restored, or a forward fix, whatever the environment's `on_verification_failure` policy
(`rollback` or `notify`). Each incident is resolved once (`incident.resolved`, with the
recovery time and what recovered it).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bot.domain import states
from bot.domain.ingest import revision_label
from bot.domain.messages import PagerAlert
from bot.services import audit, outbox
from bot.store.tables import AuditEvent, Deployment, row_id

OPENED = "incident.opened"
RESOLVED = "incident.resolved"
# The states a deployment whose verification failed can be in afterwards.
_AFTER_FAILURE = (
    states.VERIFICATION_FAILED,
    states.ROLLING_BACK,
    states.ROLLED_BACK,
    states.ROLLBACK_FAILED,
)


def incident_key(deployment: Deployment) -> str:
    """The dedup key (PagerDuty) or alias (Opsgenie) of a deployment's incident."""
    return f"releasebot/{deployment.service}/{deployment.environment}/{deployment.id}"


def resolve_after(session: Session, *, now: datetime, deployment: Deployment) -> int:
    """`deployment` passed verification: resolve the open incidents of the earlier
    deployments of its service and environment. Returns how many were resolved."""
    earlier = session.exec(
        select(Deployment)
        .where(Deployment.service == deployment.service)
        .where(Deployment.environment == deployment.environment)
        .where(col(Deployment.id) < row_id(deployment))
        .where(col(Deployment.state).in_(_AFTER_FAILURE))
    ).all()
    subjects = {f"deployment:{bad.id}": bad for bad in earlier}
    if not subjects:
        return 0
    rows = session.exec(
        select(AuditEvent.subject, AuditEvent.action, AuditEvent.at)
        .where(col(AuditEvent.subject).in_(sorted(subjects)))
        .where(col(AuditEvent.action).in_((OPENED, RESOLVED)))
        .order_by(col(AuditEvent.seq))
    ).all()
    opened: dict[str, str] = {}
    resolved: set[str] = set()
    for subject, action, at in rows:
        if action == OPENED:
            opened.setdefault(subject, at)
        else:
            resolved.add(subject)
    count = 0
    for subject in sorted(set(opened) - resolved, key=lambda s: row_id(subjects[s])):
        _resolve(session, now=now, bad=subjects[subject], by=deployment, opened_at=opened[subject])
        count += 1
    return count


def _resolve(
    session: Session, *, now: datetime, bad: Deployment, by: Deployment, opened_at: str
) -> None:
    restored = bad.rollback_to == by.sha
    how = "after the rollback" if restored else "in a later deploy (forward fix)"
    recovered_after = now - datetime.fromisoformat(opened_at.replace("Z", "+00:00"))
    outbox.enqueue(
        session,
        PagerAlert(
            deployment_id=row_id(bad),
            action="resolve",
            dedup_key=incident_key(bad),
            summary=f"{bad.service} {bad.environment} recovered: "
            f"{revision_label(by.sha, by.version)} verified {how}",
        ),
        now=now,
    )
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action=RESOLVED,
        subject=f"deployment:{bad.id}",
        details={
            "dedup_key": incident_key(bad),
            "restored_by": by.id,
            "by": "rollback" if restored else "forward_fix",
            "recovery_seconds": int(recovered_after.total_seconds()),
        },
    )
