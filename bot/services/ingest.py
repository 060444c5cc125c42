"""Recording a verified webhook delivery: stored once per delivery id, then applied.

A delivery carries at most one CI event. `store_many` stores it (its id makes copies
answer `duplicate`) with what the request parsed, pending; the applier
(`bot.services.applier`) later applies the event through `apply_work`, which goes through
`reactions.apply_event`; the audit records and outbox rows it causes are written together
at the end. `record_delivery` does both in one transaction.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.events import DeployEvent
from bot.domain.gates.pipeline import each_reviewed_environment
from bot.domain.ingest import ACCEPTED, DUPLICATE, IGNORED, Delivery, IngestResult, ShaLookup
from bot.domain.messages import ResolveSha
from bot.domain.tracking import Tracked, resolve
from bot.ports import Comparison
from bot.services import outbox, reactions
from bot.services.delivery_work import Work
from bot.store import statements as sql
from bot.store.deferred import deferred_inserts
from bot.store.tables import Deployment

# Where the provider's id of a deployment waiting for approval goes in its gate's context
# (what `integrations/deployers/gitlab_approval.py` reads as `gitlab_deployment_id`).
WAITING_ID = "gitlab_deployment_id"


PENDING = "pending"  # stored, answered, waiting for the applier
FAILED = "failed"  # its application was given up on after every attempt


@dataclass(frozen=True)
class ToStore:
    """One verified delivery ready to store: its row, and the answer once it is stored."""

    row: dict[str, Any]
    result: IngestResult

    @property
    def provider(self) -> str:
        return str(self.row["provider"])

    @property
    def delivery_id(self) -> str:
        return str(self.row["delivery_id"])


def to_store(*, now: datetime, config: Config, delivery: Delivery, work: Work) -> ToStore:
    """What storing a delivery writes and answers, decided before the database is touched.

    What can be decided without applying is decided here and stored as done: a delivery
    with nothing to track (a ping is accepted, anything else ignored, with the parser's
    note) and an event no configured service tracks (ignored, saying so). Everything else
    is stored pending, keyed by the service and environment it is applied in order with,
    and answered accepted.
    """
    event = work.lookup.event if work.lookup is not None else work.event
    tracked = resolve(config, event.target) if event is not None else None
    decided = _decided(delivery, work, event, tracked)
    key = None if decided is not None else _key(tracked)
    result = decided or IngestResult(ACCEPTED, delivery.delivery_id)
    row = _row(delivery, now=now, result=result, work=work, key=key, pending=decided is None)
    return ToStore(row, result)


def insert_many(conn: sa.Connection, batch: list[ToStore]) -> list[IngestResult]:
    """Store a group of new deliveries with one multi-row INSERT and no look-up: what the
    group commit runs for webhook requests, in order, one answer per delivery. A copy
    earlier in the group is answered `duplicate` here; a delivery id stored before (a
    redelivery, or a copy another replica stored meanwhile) fails the INSERT on
    uq_webhook_delivery, and the group commit then stores each delivery of the group
    alone (`store_one`), which answers that copy `duplicate`."""
    rows, results = _first_copies(batch, set())
    if rows:
        conn.execute(sql.INSERT_DELIVERY, rows)
    return results


def store_many(conn: sa.Connection, batch: list[ToStore]) -> list[IngestResult]:
    """Store a group of deliveries with one look-up and one multi-row insert: the answer
    of each, in order; a delivery id already stored (or earlier in the group) is
    answered `duplicate`. What the spool drain and `store_one` run, where copies are
    expected."""
    seen: set[tuple[str, str]] = set()
    for provider in {item.provider for item in batch}:
        ids = [item.delivery_id for item in batch if item.provider == provider]
        found = conn.execute(sql.SEEN_DELIVERIES, {"provider": provider, "ids": ids})
        seen.update((provider, delivery_id) for (delivery_id,) in found)
    rows, results = _first_copies(batch, seen)
    if rows:
        conn.execute(sql.INSERT_DELIVERY, rows)
    return results


def _first_copies(
    batch: list[ToStore], seen: set[tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[IngestResult]]:
    """The rows to insert (each delivery not in `seen` nor earlier in `batch`) and every
    delivery's answer, in order."""
    rows: list[dict[str, Any]] = []
    results: list[IngestResult] = []
    for item in batch:
        key = (item.provider, item.delivery_id)
        if key in seen:
            results.append(IngestResult(DUPLICATE, item.delivery_id))
            continue
        seen.add(key)
        rows.append(item.row)
        results.append(item.result)
    return rows, results


def store_one(session: Session, item: ToStore) -> IngestResult:
    """Store one delivery once per delivery id, on its own (`insert_many`'s fallback)."""
    return store_many(session.connection(), [item])[0]


_TIMES = ("received_at", "applied_at", "next_attempt_at")


def to_record(item: ToStore) -> dict[str, Any]:
    """A delivery ready to store as plain JSON, for the local spool (`bot.store.spool`)."""
    row = dict(item.row)
    for name in _TIMES:
        row[name] = row[name].isoformat() if row.get(name) is not None else None
    row["body"] = base64.b64encode(row["body"]).decode("ascii") if row.get("body") else None
    result = item.result
    return {
        "row": row,
        "result": [result.status, result.delivery, result.detail, result.deployment_id],
    }


def from_record(record: dict[str, Any]) -> ToStore:
    """The delivery a spool record holds, as `to_record` wrote it."""
    row = dict(record["row"])
    for name in _TIMES:
        row[name] = datetime.fromisoformat(row[name]) if row.get(name) else None
    row["body"] = base64.b64decode(row["body"]) if row.get("body") else None
    status, delivery_id, detail, deployment_id = record["result"]
    result = IngestResult(status, delivery_id, detail=detail, deployment_id=deployment_id)
    return ToStore(row, result)


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
    """Store one verified delivery and apply it in the same transaction, once per delivery id.

    The applier's work for one delivery done at once: what a process that applies before
    answering (`Overrides.apply_before_response`) runs, answering what applying did.
    `event` is None for deliveries that carry nothing to track (ping, unknown events); `note`
    then says why. `commits` is the commit list a generic webhook may carry with its event.
    """
    conn = session.connection()
    seen = conn.execute(
        sql.SEEN_DELIVERY, {"provider": delivery.provider, "delivery_id": delivery.delivery_id}
    ).first()
    if seen is not None:
        return IngestResult(DUPLICATE, delivery.delivery_id)
    work = Work(event=event, note=note, commits=commits, lookup=lookup)
    result = apply_work(session, now=now, config=config, delivery=delivery, work=work)
    # A concurrent copy of this delivery fails here on uq_webhook_delivery; its transaction
    # is retried and then finds this row: answered duplicate.
    row = _row(
        delivery, now=now, result=result, work=work, key=apply_key(config, work), pending=False
    )
    conn.execute(sql.INSERT_DELIVERY, {**row, "attempts": 1})
    return result


def apply_work(
    session: Session, *, now: datetime, config: Config, delivery: Delivery, work: Work
) -> IngestResult:
    """Apply what one delivery says: its event through `reactions.apply_event`, or its sha
    lookup queued for the worker. Re-applying is harmless: an event the deployment has
    already seen changes nothing (answered ignored, "deployment already ...")."""
    # The outbox rows the delivery queues are written together at the end.
    with deferred_inserts(session):
        if work.lookup is not None:
            return _queue_lookup(
                session, now=now, config=config, delivery=delivery, lookup=work.lookup
            )
        return _apply(
            session,
            now=now,
            config=config,
            delivery=delivery,
            event=work.event,
            note=work.note,
            commits=work.commits,
        )


def apply_key(config: Config, work: Work) -> str | None:
    """The service and environment a delivery is applied in order with (None: nothing
    configured tracks it)."""
    event = work.lookup.event if work.lookup is not None else work.event
    return _key(resolve(config, event.target) if event is not None else None)


def _key(tracked: Tracked | None) -> str | None:
    return f"{tracked.service}/{tracked.environment}" if tracked is not None else None


def _decided(
    delivery: Delivery, work: Work, event: DeployEvent | None, tracked: Tracked | None
) -> IngestResult | None:
    """The answer to a delivery that needs no applying, or None when it does: `event` is
    what it says happened and `tracked` where (None: nothing configured tracks it)."""
    if event is None:
        status = ACCEPTED if delivery.event == "ping" else IGNORED
        return IngestResult(status, delivery.delivery_id, detail=work.note)
    if tracked is None:
        return _untracked(delivery, event)
    return None


def _row(
    delivery: Delivery,
    *,
    now: datetime,
    result: IngestResult,
    work: Work,
    key: str | None,
    pending: bool,
) -> dict[str, Any]:
    return {
        "provider": delivery.provider,
        "delivery_id": delivery.delivery_id,
        "event": delivery.event[:100],
        "received_at": now,
        "outcome": PENDING if pending else result.status,
        "detail": (result.detail or "")[:500] or None,
        "deployment_id": result.deployment_id,
        "body": delivery.body,
        "apply_key": key,
        "work": work.to_dict() if key is not None else None,
        "applied_at": None if pending else now,
        "next_attempt_at": now if pending else None,
    }


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
            "applied_at": now,
        },
    )
    return True


def _queue_lookup(
    session: Session, *, now: datetime, config: Config, delivery: Delivery, lookup: ShaLookup
) -> IngestResult:
    tracked = resolve(config, lookup.event.target)
    if tracked is None:
        return _untracked(delivery, lookup.event)
    if lookup.environment is not None and not _decides(config, tracked, lookup.event):
        # A job in manual where GitLab does not hold the gate: just a job not run yet.
        event = replace(lookup.event, gate=None)
        return _apply(
            session, now=now, config=config, delivery=delivery, event=event, note=None, commits=None
        )
    message = ResolveSha(
        lookup.provider, lookup.project, lookup.deployment_id, lookup.event, lookup.environment
    )
    outbox.enqueue(session, message, now=now)
    detail = (
        "the deployment waiting for approval is being looked up"
        if lookup.environment is not None
        else "the full commit sha is being looked up"
    )
    return IngestResult(ACCEPTED, delivery.delivery_id, detail=detail)


def apply_resolved(
    session: Session,
    *,
    now: datetime,
    config: Config,
    event: DeployEvent,
    waiting_id: int | None = None,
) -> Deployment | None:
    """Apply an event once the worker has looked up its full sha (or the deployment a job
    waiting in manual belongs to).

    An event that asks for a gate the code host decides (a GitLab deployment waiting for
    approval) opens it only when the environment's deploy section names that deployer, the
    code host still holds the deployment (`waiting_id`, its id there, goes into the gate's
    context) and releasebot's deployment has not moved past waiting already.
    """
    tracked = resolve(config, event.target)
    if event.gate is not None:
        keep = (
            tracked is not None
            and waiting_id is not None
            and _decides(config, tracked, event)
            and not _moved_on(session, tracked, event)
        )
        gate = event.gate
        context = {**gate.context, WAITING_ID: str(waiting_id)}
        event = replace(event, gate=replace(gate, context=context) if keep else None)
    applied = _apply_tracked(session, now=now, config=config, event=event, commits=None)
    return applied[0] if applied is not None else None


def _decides(config: Config, tracked: Tracked, event: DeployEvent) -> bool:
    """Whether the environment's deploy section names the deployer the event's gate is
    decided through (for GitLab: `deploy: {gitlab_deployment_approval: {}}`)."""
    env = config.services[tracked.service].environment(tracked.environment)
    deploy = env.deploy if env is not None else None
    return event.gate is not None and deploy is not None and deploy.kind == event.gate.decide_via


def _moved_on(session: Session, tracked: Tracked, event: DeployEvent) -> bool:
    """Whether the latest deployment of the event's sha there is past waiting: approved or
    running, or over while this very CI deployment is what it tracks. A lookup answered
    after the pipeline (or a decision) moved on must not open a gate behind it."""
    latest = session.exec(
        select(Deployment)
        .where(col(Deployment.service) == tracked.service)
        .where(col(Deployment.environment) == tracked.environment)
        .where(col(Deployment.sha) == event.sha)
        .order_by(col(Deployment.attempt).desc())
        .limit(1)
    ).first()
    if latest is None or latest.state in (states.PENDING, states.AWAITING_APPROVAL):
        return False
    if latest.state in (states.APPROVED, states.IN_PROGRESS):
        return True
    return event.external_id is None or latest.external_id == event.external_id


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
    # A review decides the gate of each environment it covered where the release waits at
    # one; the answer is the first environment's, unless only another one changed.
    events = each_reviewed_environment(event)
    if len(events) > 1:
        events = [e for e in events if _waits(session, config, e)] or events[:1]
    results = [
        _apply_one(session, now=now, config=config, delivery=delivery, event=e, commits=commits)
        for e in events
    ]
    return next((r for r in results if r.status == ACCEPTED), results[0])


def _waits(session: Session, config: Config, event: DeployEvent) -> bool:
    """Whether the latest deployment of the event's sha where it points waits at a gate."""
    tracked = resolve(config, event.target)
    if tracked is None:
        return False
    latest = session.exec(
        select(Deployment)
        .where(col(Deployment.service) == tracked.service)
        .where(col(Deployment.environment) == tracked.environment)
        .where(col(Deployment.sha) == event.sha)
        .order_by(col(Deployment.attempt).desc())
        .limit(1)
    ).first()
    return latest is not None and latest.state == states.AWAITING_APPROVAL


def _apply_one(
    session: Session,
    *,
    now: datetime,
    config: Config,
    delivery: Delivery,
    event: DeployEvent,
    commits: Comparison | None,
) -> IngestResult:
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
