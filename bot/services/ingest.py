"""Recording a verified webhook delivery: stored once per delivery id, then applied.

A delivery carries at most one CI event. `record_delivery` stores the delivery (its id makes
copies answer `duplicate`), applies the event through `reactions.apply_event` and answers
what happened; the audit records and outbox rows it causes are written together at the end.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.config import Config
from bot.domain.events import DeployEvent
from bot.domain.ingest import ACCEPTED, DUPLICATE, IGNORED, Delivery, IngestResult, ShaLookup
from bot.domain.messages import ResolveSha
from bot.domain.tracking import resolve
from bot.ports import Comparison
from bot.services import outbox, reactions
from bot.store import statements as sql
from bot.store.deferred import deferred_inserts
from bot.store.tables import Deployment


def record_delivery(
    session: Session,
    *,
    now: datetime,
    config: Config,
    delivery: Delivery,
    event: DeployEvent | None,
    note: str | None = None,
    commits: Comparison | None = None,
    lookup: ShaLookup | None = None,
) -> IngestResult:
    """Store one verified delivery and apply what it says, once per delivery id.

    `event` is None for deliveries that carry nothing to track (ping, unknown events); `note`
    then says why, and the delivery is answered as ignored (or accepted for a ping).
    `commits` is the commit list a generic webhook may carry with its event.
    """
    conn = session.connection()
    seen = conn.execute(
        sql.SEEN_DELIVERY, {"provider": delivery.provider, "delivery_id": delivery.delivery_id}
    ).first()
    if seen is not None:
        return IngestResult(DUPLICATE, delivery.delivery_id)

    # The audit records and outbox rows the delivery causes are written together at the end.
    with deferred_inserts(session):
        if lookup is not None:
            result = _queue_lookup(
                session, now=now, config=config, delivery=delivery, lookup=lookup
            )
        else:
            result = _apply(
                session,
                now=now,
                config=config,
                delivery=delivery,
                event=event,
                note=note,
                commits=commits,
            )
    # A concurrent copy of this delivery fails here on uq_webhook_delivery; its transaction
    # is retried and then finds this row: answered duplicate.
    conn.execute(
        sql.INSERT_DELIVERY,
        {
            "provider": delivery.provider,
            "delivery_id": delivery.delivery_id,
            "event": delivery.event[:100],
            "received_at": now,
            "outcome": result.status,
            "detail": (result.detail or "")[:500] or None,
            "deployment_id": result.deployment_id,
            "body": delivery.body,
        },
    )
    return result


def first_sight(
    session: Session, *, now: datetime, provider: str, delivery_id: str, event: str
) -> bool:
    """Note a delivery that is answered outside this module (Slack's Events API): True the
    first time its id is seen, False for every copy after (a retry, or another replica's)."""
    conn = session.connection()
    seen = conn.execute(
        sql.SEEN_DELIVERY, {"provider": provider, "delivery_id": delivery_id}
    ).first()
    if seen is not None:
        return False
    # A concurrent copy fails here on uq_webhook_delivery; retried, it finds this row.
    conn.execute(
        sql.INSERT_DELIVERY,
        {
            "provider": provider,
            "delivery_id": delivery_id[:200],
            "event": event[:100],
            "received_at": now,
            "outcome": ACCEPTED,
            "detail": None,
            "deployment_id": None,
            "body": None,
        },
    )
    return True


def _queue_lookup(
    session: Session, *, now: datetime, config: Config, delivery: Delivery, lookup: ShaLookup
) -> IngestResult:
    if resolve(config, lookup.event.target) is None:
        return _untracked(delivery, lookup.event)
    message = ResolveSha(lookup.provider, lookup.project, lookup.deployment_id, lookup.event)
    outbox.enqueue(session, message, now=now)
    return IngestResult(
        ACCEPTED, delivery.delivery_id, detail="the full commit sha is being looked up"
    )


def apply_resolved(
    session: Session, *, now: datetime, config: Config, event: DeployEvent
) -> Deployment | None:
    """Apply an event once the worker has looked up its full sha."""
    applied = _apply_tracked(session, now=now, config=config, event=event, commits=None)
    return applied[0] if applied is not None else None


def _apply_tracked(
    session: Session,
    *,
    now: datetime,
    config: Config,
    event: DeployEvent,
    commits: Comparison | None,
) -> tuple[Deployment | None, bool] | None:
    """Apply an event to the service and environment that track it (None: nothing does)."""
    tracked = resolve(config, event.target)
    if tracked is None:
        return None
    return reactions.apply_event(
        session,
        now=now,
        config=config,
        service=tracked.service,
        environment=tracked.environment,
        event=event,
        commits=commits,
    )


def _untracked(delivery: Delivery, event: DeployEvent) -> IngestResult:
    where = event.target.repo or event.target.app or event.target.service or "?"
    return IngestResult(
        IGNORED,
        delivery.delivery_id,
        detail=f"no configured service tracks {event.target.provider}:{where}"
        + (f" environment {event.target.environment}" if event.target.environment else ""),
    )


def _apply(
    session: Session,
    *,
    now: datetime,
    config: Config,
    delivery: Delivery,
    event: DeployEvent | None,
    note: str | None,
    commits: Comparison | None,
) -> IngestResult:
    if event is None:
        status = ACCEPTED if delivery.event == "ping" else IGNORED
        return IngestResult(status, delivery.delivery_id, detail=note)
    applied = _apply_tracked(session, now=now, config=config, event=event, commits=commits)
    if applied is None:
        return _untracked(delivery, event)
    deployment, changed = applied
    if deployment is None:
        return IngestResult(IGNORED, delivery.delivery_id, detail="stale event")
    return IngestResult(
        ACCEPTED if changed else IGNORED,
        delivery.delivery_id,
        deployment_id=deployment.id,
        detail=None if changed else f"deployment already {deployment.state}",
    )
